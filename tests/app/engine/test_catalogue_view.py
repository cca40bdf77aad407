"""The live catalogue's view over a version (app/engine/catalogue.py), by hand on the tiny catalogue
(tests/fixtures/tiny_model.py): history [i00] ranks i09, i06, i03, i00 (shoes, heaviest first), then
i01 (0.0132) and i02 (0.0120); prices 5, 10, ..., 50, i10 unknown, i11 60; category = index % 3
over shoes, books, toys."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import catalogue as catalogue_module
from app.engine.catalogue import build_view, fold_unavailable, trained_view
from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.recommender import Result, item_list, prepare, recommend_batch
from app.stores.records import CatalogueEntry
from tests.fixtures.tiny_model import build_version, tiny_arrays

TITLES = [f"Item {i}" for i in range(12)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    models = tmp_path_factory.mktemp("models")
    build_version(models, "v1", tiny_arrays(), item_extra={"title": TITLES})
    return load_version(models / "v1")


def ids(model: LoadedModel, result: Result) -> list[str]:
    return model.item_ids[result.indices].tolist()


def answer(model: LoadedModel, entries: list[CatalogueEntry], **request: object) -> list[str]:
    view = build_view(model, entries, generation=1)
    options = {"history": ["i00"], "k": 3, "exclude_seen": True, **request}
    for side in ("student", "teacher"):  # both arms and the shadow prepare the same way
        (result,) = recommend_batch([prepare(model, view=view, side=side, **options).query])  # type: ignore[arg-type]
        if side == "student":
            served = ids(model, result)
        else:
            assert set(ids(model, result)).isdisjoint(e.item_id for e in entries if not e.available), (
                "the teacher served an unavailable item"
            )
    return served


def test_the_trained_view_is_the_model_arrays_themselves(model: LoadedModel) -> None:
    view = trained_view(model)
    assert view.price is model.price and view.category is model.category
    assert view.unavailable.tolist() == [] and view.generation == 0
    assert (
        build_view(model, [CatalogueEntry("not-in-this-version", available=False)], 3).unavailable.tolist()
        == []
    )


def test_an_unavailable_item_is_never_served(model: LoadedModel) -> None:
    assert answer(model, []) == ["i09", "i06", "i03"]
    gone = [CatalogueEntry("i09", available=False)]
    assert answer(model, gone) == ["i06", "i03", "i01"]
    # the popular fallback (no known history item): i05, i02, i07 ... with i05 gone -> i02, i07, i00
    assert answer(model, [CatalogueEntry("i05", available=False)], history=[]) == ["i02", "i07", "i00"]


def test_unavailable_items_ride_along_and_every_path_drops_them(model: LoadedModel) -> None:
    gone = [CatalogueEntry("i09", available=False), CatalogueEntry("i06", available=False)]
    view = build_view(model, gone, generation=1)
    query = prepare(model, history=["i00"], k=3, exclude_seen=True, view=view).query
    assert query.unavailable is view.unavailable and query.exclude.tolist() == [0]  # nothing merged
    assert answer(model, gone) == ["i03", "i01", "i02"]  # the exact path
    assert answer(model, gone, categories=["shoes"], k=5, exclude_seen=False) == ["i03", "i00"]  # filtered
    assert answer(model, gone, max_price=100.0, k=2) == ["i03", "i01"]  # filtered, the whole catalogue scored
    assert answer(model, gone, history=[], k=2, exclude_items=["i05"]) == ["i02", "i07"]  # popular
    # every item gone but two: fewer than k come back, never an unavailable one
    most = [CatalogueEntry(f"i{i:02d}", available=False) for i in range(12) if i not in (4, 8)]
    assert answer(model, most, k=5, exclude_seen=False) == ["i04", "i08"]  # 0.0096, 0.0048


def test_the_ann_index_gets_few_unavailable_as_exclusions_and_many_as_an_eligible_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalogue_module, "FEW_UNAVAILABLE", 2)
    gone, many = np.array([3, 7]), np.array([1, 3, 7])
    exclude = np.array([5])
    folded = fold_unavailable(
        10, [(exclude, None, gone), (exclude, None, many), (exclude, np.array([0, 1, 2, 3]), many)]
    )
    assert folded[0][0].tolist() == [3, 5, 7] and folded[0][1] is None
    assert folded[1][0] is exclude and folded[1][1].tolist() == [0, 2, 4, 5, 6, 8, 9]
    assert folded[2][1].tolist() == [0, 2]


def test_price_overrides_drive_the_filters_and_the_answer(model: LoadedModel) -> None:
    entries = [CatalogueEntry("i03", price=100.0), CatalogueEntry("i10", price=1.0)]
    assert answer(model, entries, min_price=90.0) == ["i03"]  # trained 20: would not pass
    assert answer(model, entries, max_price=2.0, exclude_seen=False) == ["i10"]  # trained price unknown
    view = build_view(model, entries, generation=1)
    assert model.price[3] == 20.0  # the loaded version is never edited
    (result,) = recommend_batch([prepare(model, history=["i00"], k=3, exclude_seen=True, view=view).query])
    assert [i["price"] for i in item_list(model, result, ["price"], view)] == [50.0, 35.0, 100.0]


def test_a_category_move_and_a_new_category_reach_filters_and_answers(model: LoadedModel) -> None:
    entries = [CatalogueEntry("i06", category="garden"), CatalogueEntry("i01", category="shoes")]
    view = build_view(model, entries, generation=1)
    assert view.categories == ["shoes", "books", "toys", "garden"]
    assert view.items_by_category[0].tolist() == [0, 1, 3, 9]
    assert view.items_by_category[1].tolist() == [4, 7, 10]
    assert view.items_by_category[3].tolist() == [6]
    assert answer(model, entries, categories=["garden"]) == ["i06"]
    assert answer(model, entries, categories=["shoes"]) == ["i09", "i03", "i01"]
    (result,) = recommend_batch([prepare(model, history=["i00"], k=2, exclude_seen=True, view=view).query])
    assert [i["category"] for i in item_list(model, result, ["category"], view)] == ["shoes", "garden"]


def test_extra_field_overrides_reach_answers_only_for_the_version_columns(model: LoadedModel) -> None:
    entries = [CatalogueEntry("i09", fields={"title": "Boots, now waterproof", "colour": "red"})]
    view = build_view(model, entries, generation=1)
    assert "colour" not in view.item_extra
    assert model.item_extra["title"][9] == "Item 9"
    (result,) = recommend_batch([prepare(model, history=["i00"], k=2, exclude_seen=True, view=view).query])
    assert [i["title"] for i in item_list(model, result, ["title"], view)] == [
        "Boots, now waterproof",
        "Item 6",
    ]


def test_view_arrays_are_read_only(model: LoadedModel) -> None:
    view = build_view(
        model, [CatalogueEntry("i01", available=False, price=2.0, category="garden")], generation=1
    )
    for array in (view.price, view.category, view.unavailable):
        with pytest.raises(ValueError):
            array[0] = 0
    assert isinstance(view.unavailable, np.ndarray) and view.unavailable.dtype == np.int64

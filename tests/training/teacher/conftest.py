"""The imported-teacher tests' shared fixture: one SASRec written without training/, trained once."""

from __future__ import annotations

import pytest

from tests.fixtures import own_teacher
from tests.fixtures.imported_teacher import tiny_cfg
from training.pipeline import load_data


@pytest.fixture(scope="session")
def sasrec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny shop, and a SASRec trained on its train split's raw ids, saved and exported to ONNX.

    8 epochs: clearly above popularity on the import's validation sample (NDCG@10 0.126 against
    0.079; after 3 it was not, 0.074), so a correct mapping imports without a quality warning.
    """
    tmp = tmp_path_factory.mktemp("own")
    cfg = tiny_cfg(tmp)
    data, split = load_data(cfg)
    model = own_teacher.train_sasrec(
        data.user_ids[split.train_users], data.catalog.item_ids[split.train_items], epochs=8
    )
    own_teacher.save(model, tmp / "sasrec.pt")
    spec = own_teacher.export_onnx(model, tmp / "onnx")
    return {"tmp": tmp, "data": data, "split": split, "ckpt": tmp / "sasrec.pt", "spec": spec}

"""The dashboard through the real app (TestClient): pages, their JSON helpers, the assets, the
setting that turns it off, and the time-bucketed shadow and A/B endpoints on known data."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.ui.pages import PAGES
from tests.fixtures.dashboard import EXPERIMENT, past_hour, publish_versions


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    publish_versions(models)
    return models


@pytest.fixture
def ui_client(settings_for: Callable[..., Settings], models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(models_dir, experiment_teacher_share=0.5))) as client:
        yield client


def test_every_page_is_served_with_the_navigation_and_only_local_assets(ui_client: TestClient) -> None:
    assert ui_client.get("/ui", follow_redirects=False).headers["location"] == "/ui/overview"
    for slug, title in PAGES:
        page = ui_client.get(f"/ui/{slug}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f"<h1>{title}</h1>" in page.text and f'src="/ui/static/{slug}.js"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing remote
        assert ui_client.get(f"/ui/static/{slug}.js").status_code == 200
    assert ui_client.get("/ui/nope").status_code == 404
    vendor = ui_client.get("/ui/static/vendor/uPlot.iife.min.js")
    assert vendor.status_code == 200 and "uPlot" in vendor.text
    assert ui_client.get("/ui/static/vendor/LICENSE.uPlot").text.startswith("The MIT License")


def test_the_setting_turns_the_dashboard_off(settings_for: Callable[..., Settings], models_dir: Path) -> None:
    with TestClient(create_app(settings_for(models_dir, ui=False))) as client:
        assert client.get("/ui/overview").status_code == 404
        assert client.get("/ui/api/versions").status_code == 404
        assert client.get("/ui/static/ui.js").status_code == 404
        assert client.get("/health/ready").status_code == 200
        assert not hasattr(client.app.state, "traffic")


def test_versions_carry_metrics_gates_curves_and_only_named_plots(ui_client: TestClient) -> None:
    body = ui_client.get("/ui/api/versions").json()
    assert [v["version"] for v in body["versions"]] == ["v1", "v2"]  # oldest first
    assert (body["served_version"], body["latest"], body["candidate"]) == ("v2", "v2", None)
    v2 = body["versions"][1]
    assert v2["latest"] and v2["metrics"]["test"]["student"]["ndcg@10"] == pytest.approx(0.297)
    assert v2["metrics"]["gates"]["status"] == "passed"
    assert [row["epoch"] for row in v2["curves"]["student"]] == [1, 2, 3, 4, 5]
    assert v2["plots"] == ["metrics.png"]
    plot = ui_client.get("/ui/api/versions/v2/files/metrics.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG")
    for path in ("/ui/api/versions/v2/files/manifest.json", "/ui/api/versions/v2/files/report.json",
                 "/ui/api/versions/v9/files/metrics.png"):  # fmt: skip
        assert ui_client.get(path).status_code == 404  # only plots the manifest names


def test_items_give_catalogue_fields_and_flag_unknown_ids(ui_client: TestClient) -> None:
    body = ui_client.get("/ui/api/items", params=[("ids", "i05"), ("ids", "i10"), ("ids", "zz")]).json()
    i05, i10, zz = body["items"]
    # tiny catalogue: category index % 3 of (shoes, books, toys), price 5 (i + 1) but i10 unknown; i05 most popular
    assert (i05["category"], i05["price"], i05["popularity_rank"]) == ("toys", 30.0, 1)
    assert i10["price"] is None and i10["category"] == "books"
    assert zz == {"item_id": "zz", "known": False}
    assert i05["available"] and i10["available"]
    too_many = ui_client.get("/ui/api/items", params=[("ids", "i00")] * 1001)
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["query", "ids"]


def test_items_show_the_live_catalogue_the_answers_carry(
    ui_client: TestClient, admin: dict[str, str]
) -> None:
    """Regression: the explorer showed the trained price and category after the overlay changed them."""
    change = {"available": False, "price": 12.5, "category": "books"}
    assert ui_client.patch("/admin/catalogue/items/i05", json=change, headers=admin).status_code == 200
    (i05,) = ui_client.get("/ui/api/items", params=[("ids", "i05")]).json()["items"]
    assert (i05["available"], i05["price"], i05["category"]) == (False, 12.5, "books")


def test_traffic_counts_the_service_requests_and_leaves_the_dashboard_out(ui_client: TestClient) -> None:
    for _ in range(3):
        assert ui_client.post("/v1/recommend", json={"history": ["i00"], "k": 3}).status_code == 200
    assert ui_client.post("/v1/recommend", json={"history": ["i00"], "k": 0}).status_code == 422
    ui_client.get("/ui/overview")
    body = ui_client.get("/ui/api/traffic", params={"bucket_seconds": 60}).json()
    total = {key: sum(b[key] for b in body["buckets"]) for key in ("requests", "errors_4xx", "errors_5xx")}
    assert total == {"requests": 4, "errors_4xx": 1, "errors_5xx": 0}
    one = ui_client.get("/ui/api/traffic", params={"endpoint": "/v1/recommend"}).json()["buckets"]
    assert sum(b["requests"] for b in one) == 4 and all(b["p50_ms"] is not None for b in one if b["requests"])
    assert ui_client.get("/ui/api/traffic", params={"bucket_seconds": 5}).status_code == 422


def test_timeseries_bucket_the_stored_shadow_and_ab_data(
    settings_for: Callable[..., Settings], models_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(models_dir, experiment_teacher_share=0.5)
    now = 60 * (int(time.time()) // 60)
    past_hour(settings.state_db_path, now, minutes=3)
    with TestClient(create_app(settings)) as client:
        shadow = client.get("/v1/shadow/timeseries", params={"bucket_seconds": 60}).json()
        compared = client.get("/v1/shadow/report").json()["count"]
        ab = client.get("/v1/ab/timeseries", params={"bucket_seconds": 120}).json()
        report = client.get("/v1/ab/report").json()
        late = client.get("/v1/ab/timeseries", params={"since": now - 60}).json()
        assert client.get("/v1/ab/timeseries", params={"bucket_seconds": 0}).status_code == 422
        named = client.get("/v1/ab/timeseries", params={"experiment": EXPERIMENT, "bucket_seconds": 120})
        assert named.json() == ab
        assert client.get("/v1/ab/timeseries", params={"experiment": "other"}).status_code == 404
    (pair,) = shadow["pairs"]
    assert (pair["student_version"], pair["teacher_version"]) == ("v2", "v2")
    assert [b["start"] for b in pair["buckets"]] == [now - 180, now - 120, now - 60]
    assert sum(b["count"] for b in pair["buckets"]) == compared
    # past_hour compares some of the student's answers: the share is that count over those answers
    assert all(0 < b["share_compared"] == b["count"] / b["served"] <= 1 for b in pair["buckets"])
    assert ab["experiment"]["name"] == EXPERIMENT and ab["arms"] == ["student", "teacher"]
    last = ab["buckets"][-1]["arms"]
    for arm in ("student", "teacher"):  # the last cumulative bucket is the whole report
        assert last[arm]["cumulative"]["impressions"] == report["arms"][arm]["impressions"]
        assert last[arm]["cumulative"]["ctr"] == report["arms"][arm]["ctr"]
    assert [b["start"] for b in late["buckets"]] == [now - 60]

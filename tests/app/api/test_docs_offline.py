"""`/docs` works without the network: every script, stylesheet and icon it references is served by
the app itself (regression: FastAPI's default page loaded Swagger UI from a CDN and was blank offline)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def _referenced_urls(page: str) -> list[str]:
    attrs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    js_urls = re.findall(r"""url:\s*['"]([^'"]+)['"]""", page)
    return attrs + js_urls


def test_docs_reference_only_local_urls_that_answer(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = _referenced_urls(page.text)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    assert any(u.endswith("swagger-ui.css") for u in urls)
    for url in urls:
        assert url.startswith("/"), f"/docs references a non-local URL: {url}"
        assert not url.startswith("//"), f"/docs references a protocol-relative URL: {url}"
        assert client.get(url).status_code == 200, url
    assert "cdn" not in page.text.lower()


def test_openapi_still_served_and_redoc_off(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404

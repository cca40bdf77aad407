"""`/docs` from local assets: Swagger UI 5 (it reads the OpenAPI 3.1 document FastAPI writes),
vendored under app/ui/static/vendor/swagger-ui/ with its licence and mounted under `/docs/assets`, so
the page works offline. FastAPI's default page loads its script from a CDN (blank without the
network), and the `swagger-ui-bundle` package ships Swagger UI 4.15, which cannot read 3.1
("Unable to render this definition").
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "ui" / "static" / "vendor" / "swagger-ui"


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` (and its OAuth2 redirect) with the vendored Swagger UI files."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="swagger-ui-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/oauth2-redirect", oauth2_redirect, methods=["GET"], include_in_schema=False)

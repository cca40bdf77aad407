"""The dashboard's pages: one Jinja2 shell per page (layout, navigation, the page's script), and
`install_ui`, which mounts them, their JSON helpers (`app.ui.api`) and the static assets on an app.

The pages carry no data: each page's script reads the JSON API from the same origin, so a page is
exactly as fresh as the API and needs nothing from outside the service (no CDN; the chart library is
vendored under static/vendor/).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.ui import api

HERE = Path(__file__).resolve().parent
# (path segment, title): the navigation, in order.
PAGES = (
    ("overview", "Overview"),
    ("versions", "Versions"),
    ("shadow", "Shadow"),
    ("ab", "A/B"),
    ("explore", "Explore"),
)
_TITLES = dict(PAGES)

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


@router.get("")
async def index() -> Response:
    """/ui opens the overview."""
    return RedirectResponse("/ui/overview", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/{page}", response_class=HTMLResponse)
async def page(request: Request, page: str) -> Response:
    """One page's shell; its script fills it from the JSON API."""
    if page not in _TITLES:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no dashboard page {page!r}; pages: {', '.join(_TITLES)}"
        )
    settings = request.app.state.settings
    context = {
        "page": page,
        "title": _TITLES[page],
        "pages": PAGES,
        "admin_enabled": settings.admin_token is not None,
        "experiment": settings.experiment_name,
    }
    return templates.TemplateResponse(request, f"{page}.html", context)


def install_ui(app: FastAPI) -> None:
    """Add the pages, their JSON helpers and /ui/static to `app` (create_app calls it when RECDISTILL_UI)."""
    app.include_router(api.router)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

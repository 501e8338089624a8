"""``/ui``: the dashboard's pages and their assets, all shipped in this package.

The pages are static files; their scripts read the same REST API as every other client, with
the same API key (asked for once, kept in the tab's sessionStorage and sent as ``X-API-Key``).
The pages and assets themselves hold no data, so they are served without a key. A
Content-Security-Policy lets them load and reach nothing but this origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Links to the Temporal UI must not carry the dashboard's URL along.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=_PAGE_HEADERS)


@router.get("")
async def jobs_page() -> FileResponse:
    """Every job: status, progress, last result, next firing; filter and search."""
    return _page("jobs.html")


@router.get("/jobs/{job_id}")
async def job_page(job_id: str) -> FileResponse:
    """One job: spec and schedule, curves, runs, checkpoints, log tail and controls.

    The page reads the job id from its own URL; an unknown job shows the API's 404.
    """
    return _page("job.html")


def install_ui(app: FastAPI) -> None:
    """Serve the pages and, under ``/ui/static``, their scripts, styles and vendored chart."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

"""``GET /redoc``: ReDoc from the installed fastapi-offline package, with no request off the host.

FastAPIOffline serves ``/docs`` and the JavaScript and CSS of both pages; this page replaces
its ReDoc page only to add a Content-Security-Policy: ReDoc's sidebar shows Redocly's logo from
their CDN whatever its options say, and the policy stops the browser from even asking.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

# Where FastAPIOffline mounts the assets of its package (its default).
OFFLINE_ASSETS = "/static-offline-docs"
REDOC_POLICY = "img-src 'self' data:"

router = APIRouter(include_in_schema=False)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{OFFLINE_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{OFFLINE_ASSETS}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = REDOC_POLICY
    return page

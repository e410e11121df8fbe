"""Serves the single-page web app: `/` is its shell, `/static/` its modules, styles and the
browser libraries `make web-vendor` copies into `static/vendor/` (hls.js, stompjs).

Everything is same-origin files (no inline script, no CDN), so a strict Content-Security-Policy
(`script-src 'self'`) holds. The pages talk only to the public API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    # The shell is tiny and names unversioned modules: revalidate it on every load.
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    """The app's static files (ETag/Last-Modified revalidation, no directory listing)."""
    return StaticFiles(directory=STATIC_DIR, check_dir=False)

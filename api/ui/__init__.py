"""The web UI, served by cairn itself under ``/ui``: server-rendered pages, htmx for the live
parts, every asset shipped in this package (docs/ui.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui.pages import (
    applications,
    backups,
    channels,
    restores,
    sign_in,
    storages,
    workspaces,
)

STATIC = Path(__file__).parent / "static"
PAGES = (sign_in, workspaces, storages, channels, applications, backups, restores)


def install(app: FastAPI) -> None:
    for page in PAGES:
        app.include_router(page.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

"""The OpenAPI the app serves, and an answer checked against it as the fuzz suite checks."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import schemathesis

from api.main import create_app
from api.openapi import install
from core.settings import Settings


def served_openapi() -> dict[str, Any]:
    """What GET /openapi.json answers, with the problems documented as api.main does."""
    app = create_app(Settings(database_url="postgresql+psycopg://unused@127.0.0.1:1/unused"))
    install(app)
    return app.openapi()


@functools.cache
def _schema() -> Any:
    return schemathesis.openapi.from_dict(served_openapi())


def assert_documented(response: httpx.Response, method: str, path: str) -> None:
    """``response`` to ``method`` ``path`` (the template, ``/…/{app_id}``) is one the schema
    documents: its status, media type and body."""
    _schema()[path][method].validate_response(response)

"""Which applications a policy may turn continuous archiving on for (docs/pitr.md)."""

from __future__ import annotations

from typing import Any

import pytest

from db.models import Application
from services.policies import _check_archiving

DATABASE = {"host": "db", "port": 5432, "user": "app", "dbname": "shop"}


@pytest.mark.parametrize(
    ("kind", "settings", "refused"),
    [
        ("local", {"database": DATABASE}, None),
        ("local", {"volumes": {"uploads": "/srv/uploads"}}, "needs a database"),
        ("kubernetes", {"database": DATABASE}, "not available for kubernetes"),
    ],
)
def test_archiving_is_refused_naming_the_field(
    kind: str, settings: dict[str, Any], refused: str | None
) -> None:
    application = Application(platform_kind=kind, platform_settings=settings)
    assert _check_archiving({"continuous_archiving": False}, application) == []
    errors = _check_archiving({"continuous_archiving": True}, application)
    if refused is None:
        assert errors == []
    else:
        assert [e["loc"] for e in errors] == [("continuous_archiving",)]
        assert refused in errors[0]["msg"]

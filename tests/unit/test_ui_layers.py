"""The web UI goes through the domain (``services/``) and the API's presenters, never through
the API's route functions nor the ORM (issue 28): a page then cannot drift from what the API
answers, nor see more than it. Imports are read with ``ast`` as in test_layers.py."""

from __future__ import annotations

from tests.unit.test_layers import imports, under

UI = "api/ui"
# What no module of the UI imports: the JSON routes, the ORM's models and its query building.
NOT_IN_UI = ("api.routes", "db.models", "sqlalchemy")
# The session's type is handed on to services, not queried.
SESSION_TYPE = ("sqlalchemy.ext.asyncio",)
# (file, module) the UI still imports, and why; an entry that matches nothing fails (remove it).
ALLOWED = {
    ("api/ui/sessions.py", "db.models"): "the UI's own sign-in sessions (ui_sessions)",
    ("api/ui/sessions.py", "sqlalchemy"): "the UI's own sign-in sessions (ui_sessions)",
    ("api/ui/views.py", "db.models"): "types of the protection's fields (TYPE_CHECKING only)",
}


def _imported() -> list[tuple[str, str, str]]:
    """(statement, file, forbidden module) of every import the rule is about."""
    found = []
    for statement, modules in imports(UI):
        place = statement.split(":")[0]
        for forbidden in NOT_IN_UI:
            if any(under(m, (forbidden,)) and not under(m, SESSION_TYPE) for m in modules):
                found.append((statement, place, forbidden))
    return found


def test_the_ui_imports_no_route_and_no_orm() -> None:
    found = [s for s, place, module in _imported() if (place, module) not in ALLOWED]
    assert not found, "the UI calls services, not routes or the ORM:\n" + "\n".join(found)


def test_every_allowance_is_still_needed() -> None:
    unused = set(ALLOWED) - {(place, module) for _, place, module in _imported()}
    assert not unused, f"remove these allowances: {unused}"

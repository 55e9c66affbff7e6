"""The web UI goes through the domain (``services/``) and the API's presenters, never through
the API's route functions nor the ORM (issue 28): a page then cannot drift from what the API
answers, nor see more than it. Imports are read with ``ast`` as in test_layers.py."""

from __future__ import annotations

from tests.unit.test_layers import imports, under

UI = "api/ui"
# What no module of the UI imports: the JSON routes, the ORM's models and its query building.
NOT_IN_UI = ("api.routes", "db.models", "sqlalchemy")
# (file, module) the UI still imports, and why; an entry that matches nothing fails (remove it).
ALLOWED = {
    ("api/ui/sessions.py", "db.models"): "the UI's own sign-in sessions (ui_sessions)",
    ("api/ui/sessions.py", "sqlalchemy"): "the UI's own sign-in sessions (ui_sessions)",
    # Not moved yet: the writes and the policy's reads.
    ("api/ui/pages/applications.py", "api.routes"): "policy get, put, preview; run now",
    ("api/ui/pages/backups.py", "api.routes"): "cancel, protect",
    ("api/ui/pages/restores.py", "api.routes"): "start a restore",
    ("api/ui/pages/storages.py", "api.routes"): "create, update, delete",
    ("api/ui/views.py", "db.models"): "the protection queries",
    ("api/ui/views.py", "sqlalchemy"): "the protection queries",
}


def _imported() -> list[tuple[str, str, str]]:
    """(statement, file, forbidden module) of every import the rule is about."""
    found = []
    for statement, modules in imports(UI):
        place = statement.split(":")[0]
        for forbidden in NOT_IN_UI:
            if any(under(module, (forbidden,)) for module in modules):
                found.append((statement, place, forbidden))
    return found


def test_the_ui_imports_no_route_and_no_orm() -> None:
    found = [s for s, place, module in _imported() if (place, module) not in ALLOWED]
    assert not found, "the UI calls services, not routes or the ORM:\n" + "\n".join(found)


def test_every_allowance_is_still_needed() -> None:
    used = {(place, module) for _, place, module in _imported()}
    assert not set(ALLOWED) - used, f"remove these allowances: {set(ALLOWED) - used}"

"""Words with one owner are spelled only there: the packages are read with ``ast``.

A restic tag, a part name or a file name written into a storage is data that retries,
restores, retention and the catalog import read back; a second spelling of one that drifts
loses backups without an error. Each is built and parsed by ``repository/names.py`` alone.
A run's status and a workspace's plan are the ``StrEnum``s of ``core/states.py``: a bare
``"failed"`` compared with a row is a typo waiting to happen, and the plan rule is one check
(``core.states.has_backups``).

An allow-list entry names its file and word and says why; an entry that no longer matches
fails too, so a moved literal takes its entry with it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

from core.states import Plan, RunStatus, has_backups

ROOT = Path(__file__).resolve().parents[2]
# The shipped packages (pyproject's packages.find); bench/ writes only throwaway repositories.
PACKAGES = [
    "activities",
    "adapters",
    "api",
    "cli",
    "contracts",
    "core",
    "db",
    "devstack",
    "migrations",
    "repository",
    "schedules",
    "services",
    "worker",
    "workflows",
]
TO_BE_MOVED = "owned by a concurrent change; to be moved"
NOT_THIS_CHANGE = "outside the files of the change that typed the states; to be moved"


def literals() -> Iterator[tuple[str, int, str]]:
    """Every string constant of the packages, f-strings' fixed pieces included: file, line,
    text."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            place = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(), place)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    yield place, node.lineno, node.value


def misplaced(
    word_of: Callable[[str], str | None], home: str, allowed: dict[tuple[str, str], str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Literals outside ``home`` that ``word_of`` recognises and no allow-list entry covers,
    and the allow-list entries that matched nothing."""
    found, used = [], set()
    for place, line, text in literals():
        word = word_of(text)
        if word is None or place == home:
            continue
        if (place, word) in allowed:
            used.add((place, word))
        else:
            found.append(f"{place}:{line}: {text!r}")
    return found, sorted(set(allowed) - used)


# -- durable names: repository/names.py ------------------------------------------------------

TAG_PREFIXES = ("application=", "execution=", "part=", "volume:")
FILE_NAMES = ("cairn-repository.json", "manifest.json", "database.dump", "config.json")
NAMES_ALLOWED = {
    # The configuration objects' file name inside the config part's snapshot.
    ("adapters/kubernetes/platform.py", "config.json"): TO_BE_MOVED,
}


def durable_name(text: str) -> str | None:
    if text in FILE_NAMES:
        return text
    return next((prefix for prefix in TAG_PREFIXES if text.startswith(prefix)), None)


def test_tags_part_and_file_names_are_spelled_only_in_repository_names() -> None:
    found, stale = misplaced(durable_name, "repository/names.py", NAMES_ALLOWED)
    assert not found, "build or parse these with repository/names.py:\n" + "\n".join(found)
    assert not stale, f"allow-list entries that match nothing any more (remove them): {stale}"


# -- run statuses and plans: core/states.py --------------------------------------------------

STATE_WORDS = {s.value for s in RunStatus} | {p.value for p in Plan}
# Migrations are frozen history: they spell the words of their day and import nothing of today.
FROZEN = "migrations/"
STATES_ALLOWED = {
    # Plans: the one check is core.states.has_backups; these re-spell it or list the plans.
    ("db/models.py", "free"): NOT_THIS_CHANGE,
    # Run statuses read from the API's answers or labelled in metrics.
    ("cli/runs.py", "succeeded"): NOT_THIS_CHANGE,
    ("cli/runs.py", "pruned"): NOT_THIS_CHANGE,
    ("cli/runs.py", "failed"): NOT_THIS_CHANGE,
    ("cli/runs.py", "cancelled"): NOT_THIS_CHANGE,
    ("cli/runs.py", "running"): NOT_THIS_CHANGE,  # also a timeline step's state
    ("cli/storages.py", "pending"): NOT_THIS_CHANGE,  # StorageStatus.PENDING
    ("core/metrics.py", "failed"): NOT_THIS_CHANGE,
    # Other vocabularies that share a word. A timeline step's state (Temporal's activity
    # events: running, completed, failed, timed_out, cancelled) and the workflow's status:
    ("api/timeline.py", "running"): "a timeline step's state, not a run status",
    ("api/timeline.py", "failed"): "a timeline step's state, not a run status",
    ("api/timeline.py", "cancelled"): "a timeline step's state, not a run status",
    ("api/runs.py", "running"): "the timeline's workflow status, not a run status",
    ("api/ui/views.py", "running"): "a timeline step's or workflow's state, not a run status",
    # A drill check's outcome (passed, failed, error):
    ("api/schemas/drills.py", "failed"): "a drill check's outcome, not a run status",
    ("adapters/pg_checks.py", "failed"): "a drill check's outcome, not a run status",
    # Prose and process phases:
    ("activities/support.py", "cancelled"): "the message of a cancelled thread's error",
    ("adapters/kubernetes/movers.py", "failed"): "words of a mover Job's failure message",
    ("cli/dev.py", "running"): "the phase of `cairn dev`'s processes",
    ("core/run_outcome.py", "cancelled"): "the reason a cancelled workflow closed, in words",
}


def state_word(text: str) -> str | None:
    return text if text in STATE_WORDS else None


def test_run_statuses_and_plans_are_spelled_only_in_core_states() -> None:
    found, stale = misplaced(state_word, "core/states.py", STATES_ALLOWED)
    found = [f for f in found if not f.startswith(FROZEN)]
    assert not found, "use core.states' RunStatus or Plan:\n" + "\n".join(found)
    assert not stale, f"allow-list entries that match nothing any more (remove them): {stale}"


def test_only_the_dedicated_plan_has_backups() -> None:
    assert [p for p in Plan if has_backups(p)] == [Plan.DEDICATED]
    assert has_backups("dedicated") and not has_backups("free")

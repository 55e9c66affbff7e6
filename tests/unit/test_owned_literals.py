"""Words with one owner are spelled only there: the packages are read with ``ast``.

A restic tag, a part name or a file name written into a storage is data that retries,
restores, retention and the catalog import read back; a second spelling of one that drifts
loses backups without an error. Each is built and parsed by ``repository/names.py`` alone.

An allow-list entry names its file and word and says why; an entry that no longer matches
fails too, so a moved literal takes its entry with it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

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
    # The database dump's file name inside its snapshot (restored by that name) and a staging
    # file's name: adapters are in the middle of a concurrent change.
    ("adapters/pg_dump.py", "database.dump"): TO_BE_MOVED,
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

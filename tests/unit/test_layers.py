"""The import direction of cairn's layers, read from the source with ``ast``.

The API and the activities share the domain (``services/``), which builds on adapters, db and
core; workflows reach activities only through Temporal, by name, so they import nothing of the
project but the contracts they exchange. A failure lists every offending import statement.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "activities",
    "adapters",
    "api",
    "bench",
    "cli",
    "contracts",
    "core",
    "db",
    "devstack",
    "repository",
    "schedules",
    "services",
    "worker",
    "workflows",
]


def imports(package: str) -> Iterator[tuple[str, list[str]]]:
    """Every import statement in ``package`` (functions included): its place, and the modules
    it may bring in (``from workflows import steps`` brings in ``workflows.steps``)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        place = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield f"{place}:{node.lineno}: import {alias.name}", [alias.name]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolved against the file's own package
                    parts = list(place.with_suffix("").parts)[: -node.level]
                    base = ".".join([*parts, node.module] if node.module else parts)
                else:
                    base = node.module or ""
                names = [alias.name for alias in node.names]
                statement = f"{place}:{node.lineno}: from {base} import {', '.join(names)}"
                yield statement, [base, *(f"{base}.{name}" for name in names)]


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


# package -> the project packages (or modules) it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The API starts workflows by their classes (workflows.backup, ...), so it may import the
    # workflow modules, never their internals, and never the activities; outside systems it
    # reaches only through the domain (services), never an adapter itself.
    "api": (
        "activities",
        "adapters",
        "worker",
        "workflows.steps",
        "workflows.retries",
        "workflows.step_kinds",
        "workflows.failures",
    ),
    "services": (
        "api",
        "activities",
        "worker",
        "workflows.steps",
        "workflows.retries",
        "workflows.step_kinds",
    ),
    "activities": ("api", "workflows", "worker", "cli"),
    "adapters": ("api", "activities", "workflows", "db", "services", "schedules", "worker", "cli"),
    # core is the ground floor: settings, states, rules on values; it asks nothing of the
    # metadata database, the outside systems or the repositories (issue 28)
    "core": (
        "api",
        "activities",
        "workflows",
        "services",
        "schedules",
        "worker",
        "cli",
        "db",
        "adapters",
        "repository",
    ),
    "db": ("api", "activities", "workflows", "services", "schedules", "worker", "cli"),
    "repository": ("api", "activities", "workflows", "worker", "cli"),
    "schedules": ("api", "activities", "workflows", "worker", "cli"),
}
# Workflows replay deterministically inside Temporal's sandbox: besides the standard library
# and temporalio they see only what crosses the boundary, the words of the states and the
# durable names of a backup's parts (pure modules, see test_pure_modules_import_no_project).
WORKFLOW_MAY_IMPORT = ("contracts", "workflows", "core.states", "repository.names")
PURE_MODULES = ("core/states.py", "repository/names.py")
# Contracts are the shapes both sides agree on: nothing of the project but the states.
CONTRACTS_MAY_IMPORT = ("contracts", "core.states")


def allowed(package: str, module: str) -> bool:
    if package == "workflows":
        top = module.split(".")[0]
        return (
            under(module, WORKFLOW_MAY_IMPORT)
            or top in ("temporalio", "__future__")
            or top in sys.stdlib_module_names
        )
    if package == "contracts":
        return not ours(module) or under(module, CONTRACTS_MAY_IMPORT)
    return not under(module, FORBIDDEN.get(package, ()))


def offending(package: str) -> list[str]:
    return [
        statement
        for statement, modules in imports(package)
        if not all(allowed(package, module) for module in modules)
    ]


@pytest.mark.parametrize("package", [*FORBIDDEN, "workflows", "contracts"])
def test_imports_follow_the_layers(package: str) -> None:
    found = offending(package)
    assert not found, f"{package} imports across its layer:\n" + "\n".join(found)


def test_every_package_is_checked() -> None:
    """A new top-level package must be placed in the layers (or listed as exempt)."""
    present = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {
        "tests",
        "migrations",
    }
    assert present <= set(PACKAGES)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_project(module: str) -> None:
    """What workflows may import besides contracts imports nothing of the project itself."""
    package = module.split("/")[0]
    found = [
        statement
        for statement, modules in imports(package)
        if statement.startswith(f"{module}:") and any(ours(m) for m in modules)
    ]
    assert not found, "\n".join(found)

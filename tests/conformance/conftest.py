"""The conformance suite's fixture: every test runs once per platform in ``PLATFORMS``.

A platform joins by one module-scoped fixture ``<kind>_application`` (``applications.py``)
and its kind here; its tests then run in a group of their own, on one application made once.
"""

from __future__ import annotations

import pytest

from tests.conformance.applications import (
    Application,
    cairn_on_path,
    kubernetes_application,
    local_application,
)
from tests.support.kube import kube, kube_api

PLATFORMS = ["local", "kubernetes"]

__all__ = [  # fixtures used by name
    "cairn_on_path",
    "kube",
    "kube_api",
    "kubernetes_application",
    "local_application",
]


@pytest.fixture(scope="module", params=PLATFORMS)
def application(request: pytest.FixtureRequest) -> Application:
    """The platform's application (only the platforms a selected test asks for start)."""
    found: Application = request.getfixturevalue(f"{request.param}_application")
    return found

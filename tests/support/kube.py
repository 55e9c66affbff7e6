"""Fixtures for tests of the Kubernetes adapters against the API fake (no cluster needed).

A test module imports them by name; each module gets one fake, each test a fresh namespace.
Every request cairn makes through ``cairn`` is kept, per module and for the whole session:
at the end of a session in which every test using ``cairn`` passed, the session's requests
must equal deploy/kubernetes/ RBAC (``rbac_equals_what_cairn_used``): nothing missing,
nothing granted that no test used.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest
from kubernetes import client, config

from adapters.kubernetes.movers import MOVER_SERVICE_ACCOUNT
from core.settings import Settings
from tests.fakes.kube import FakeKube
from tests.support.kube_rbac import SEEN, Permission, unused

T = TypeVar("T")
HOME = str(Settings.model_fields["kube_namespace"].default)  # cairn's own namespace
# The test modules whose tests record cairn's requests (through the ``cairn`` fixture); when
# a session ran them all and each passed, it compares their requests with the RBAC.
RECORDING_MODULES = {
    "tests/integration/test_kube_platform.py",
    "tests/unit/test_kube_config.py",
    "tests/unit/test_kube_network.py",
    "tests/unit/test_kube_workloads.py",
}


class CairnCalls:
    """Runs cairn's functions and keeps the permissions they used, apart from the test's own
    setup requests, for the comparison with deploy/kubernetes/ RBAC."""

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.used: set[Permission] = set()

    def __call__(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.fake.reset_requests()
        try:
            return function(*args, **kwargs)
        finally:
            self.add(self.fake.used_in())

    def add(self, used: set[Permission]) -> None:
        """Requests cairn made otherwise (a worker process's, say)."""
        self.used |= used
        SEEN.update(used)


class _Recorded:
    def __init__(self, target: object, calls: CairnCalls) -> None:
        self._target, self._calls = target, calls

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not callable(found):
            return found
        return functools.partial(self._calls, found)


def recorded(target: T, calls: CairnCalls) -> T:
    """``target`` whose every method call goes through ``calls`` (its requests recorded)."""
    return cast(T, _Recorded(target, calls))


@pytest.fixture(scope="module")
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture(scope="module")
def kube_api(kube: FakeKube) -> client.ApiClient:
    loaded: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kube.kubeconfig)
    )
    # cairn's own namespace, where movers run as their own account (namespace.yaml)
    core(loaded).create_namespace({"metadata": {"name": HOME}})
    core(loaded).create_namespaced_service_account(
        HOME, {"metadata": {"name": MOVER_SERVICE_ACCOUNT}}
    )
    return loaded


@pytest.fixture(scope="session")
def rbac_equals_what_cairn_used(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the session's end: when every test that records cairn's requests passed, no
    permission of deploy/kubernetes/ went unused (each test checks that none is missing)."""
    items = request.session.items
    expected = {i.nodeid for i in items if "cairn" in i.fixturenames}
    modules = {i.nodeid.split("::")[0] for i in items if i.nodeid in expected}
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or modules != RECORDING_MODULES:
        return  # a part of the kube tests ran: it cannot have used every permission
    passed = {r.nodeid for r in reporter.stats.get("passed", []) if r.when == "call"}
    if expected <= passed:
        left = unused(SEEN, HOME)
        assert not left, f"deploy/kubernetes/ grants what no test made cairn use: {sorted(left)}"


@pytest.fixture(scope="module")
def cairn(kube: FakeKube, rbac_equals_what_cairn_used: None) -> CairnCalls:
    return CairnCalls(kube)


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core(kube_api).create_namespace({"metadata": {"name": name}})
    yield name
    core(kube_api).delete_namespace(name)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """``probe``'s first value that is not None, polled (the fake's controllers are async)."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def apps(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)

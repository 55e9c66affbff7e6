"""The policies that let only mover pods reach the backup storage, as the API fake stores them."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from adapters.kubernetes.network import (
    APPS_POLICY,
    MOVER_LABELS,
    MOVERS_POLICY,
    ensure_mover_policy,
    storage_networks,
)
from tests.fakes.kube import FakeKube
from tests.support import kube as fixtures
from tests.support.kube import CairnCalls
from tests.support.kube_rbac import uncovered
from tests.support.network_policy import egress_allowed

kube, kube_api, namespace, cairn = (
    fixtures.kube,
    fixtures.kube_api,
    fixtures.namespace,
    fixtures.cairn,
)
APP_POD = {"app": "shop", "tier": "web"}


def stored(fake: FakeKube, namespace: str) -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = fake.list("networking.k8s.io", "networkpolicies", namespace)
    return policies


def test_only_movers_reach_the_storage(
    kube: FakeKube, kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    cairn(ensure_mover_policy, kube_api, namespace, ["10.0.0.5", "fd00::7", "192.168.8.0/24"])
    policies = stored(kube, namespace)
    assert sorted(p["metadata"]["name"] for p in policies) == [APPS_POLICY, MOVERS_POLICY]
    for storage in ("10.0.0.5", "fd00::7", "192.168.8.20"):
        assert egress_allowed(policies, dict(MOVER_LABELS), storage), storage
        assert not egress_allowed(policies, APP_POD, storage), storage
        assert not egress_allowed(policies, {}, storage), storage
    # Application pods keep every other destination.
    for elsewhere in ("10.0.0.6", "1.1.1.1", "fd00::8"):
        assert egress_allowed(policies, APP_POD, elsewhere), elsewhere
    assert egress_allowed(policies, dict(MOVER_LABELS), "1.1.1.1")


def test_repeating_keeps_one_policy_each_and_follows_a_new_address(
    kube: FakeKube, kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    cairn(ensure_mover_policy, kube_api, namespace, ["10.0.0.5"])
    first = {p["metadata"]["name"]: p for p in stored(kube, namespace)}
    cairn(ensure_mover_policy, kube_api, namespace, ["10.0.0.5"])
    again = {p["metadata"]["name"]: p for p in stored(kube, namespace)}
    assert {n: p["spec"] for n, p in again.items()} == {n: p["spec"] for n, p in first.items()}
    assert {n: p["metadata"]["uid"] for n, p in again.items()} == {
        n: p["metadata"]["uid"] for n, p in first.items()
    }
    cairn(ensure_mover_policy, kube_api, namespace, ["10.0.0.9"])
    policies = stored(kube, namespace)
    assert len(policies) == 2
    assert egress_allowed(policies, APP_POD, "10.0.0.5")
    assert not egress_allowed(policies, APP_POD, "10.0.0.9")


def test_host_names_are_resolved() -> None:
    assert [str(n) for n in storage_networks(["localhost", "10.0.0.5"])][:2] == [
        "10.0.0.5/32",
        "127.0.0.1/32",
    ]


def test_rbac_covers_every_call(cairn: CairnCalls) -> None:
    assert cairn.used, "the tests above ran no cairn call"
    assert uncovered(cairn.used) == set()

"""cairn writes no NetworkPolicy; the two earlier versions wrote are removed, nothing else."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from adapters.kubernetes.names import MANAGED_BY
from adapters.kubernetes.network import LEGACY_POLICIES, remove_legacy_policies
from tests.fakes.kube import FakeKube
from tests.support import kube as fixtures
from tests.support.kube import CairnCalls
from tests.support.kube_rbac import uncovered

kube, kube_api, namespace, cairn = (
    fixtures.kube,
    fixtures.kube_api,
    fixtures.namespace,
    fixtures.cairn,
)
rbac_equals_what_cairn_used = fixtures.rbac_equals_what_cairn_used


def policy(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A policy as earlier versions of cairn wrote them (the spec does not matter here)."""
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }


def test_the_storage_policies_cairn_wrote_are_removed_and_no_other(
    kube: FakeKube, kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    networking: Any = client.NetworkingV1Api(kube_api)
    for name in LEGACY_POLICIES:
        networking.create_namespaced_network_policy(namespace, policy(name, dict(MANAGED_BY)))
    # the application's own: one of another name, and one that only shares a name of cairn's
    networking.create_namespaced_network_policy(namespace, policy("default-deny", {}))
    other = f"{namespace}-b"
    client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": other}})
    try:
        networking.create_namespaced_network_policy(other, policy(LEGACY_POLICIES[0], {}))
        assert cairn(remove_legacy_policies, kube_api, namespace) == sorted(LEGACY_POLICIES)
        assert cairn(remove_legacy_policies, kube_api, namespace) == []  # repeated: nothing
        assert cairn(remove_legacy_policies, kube_api, other) == []
        left = {
            (p["metadata"]["namespace"], p["metadata"]["name"])
            for where in (namespace, other)
            for p in kube.list("networking.k8s.io", "networkpolicies", where)
        }
        assert left == {(namespace, "default-deny"), (other, LEGACY_POLICIES[0])}
    finally:
        client.CoreV1Api(kube_api).delete_namespace(other)


def test_rbac_covers_every_call(cairn: CairnCalls) -> None:
    assert cairn.used, "the tests above ran no cairn call"
    assert uncovered(cairn.used) == set()

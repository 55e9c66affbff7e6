"""The NetworkPolicies earlier versions of cairn wrote in application namespaces, removed.

Movers used to run in the application's namespace with the backup storage mounted there, and
cairn kept two policies in it: ``cairn-storage-apps`` (every pod but movers may send
anywhere except the storage's addresses) and ``cairn-storage-movers``. Policies add up, so
the first re-opened all egress for the application's pods in a namespace that denies by
default, and on some network plugins its ``ipBlock`` exclusion cut pods off the API server
or node-local DNS.

Now the storage is mounted only in cairn's own namespace (see platform.py), and cairn writes
no policy anywhere: keeping other pods off the storage is the storage's side (an export that
accepts only the nodes' storage network) and, in cairn's namespace, the operator's (a
policy of their own there, docs/kubernetes.md). ``remove_legacy_policies`` deletes the two
policies where cairn made them (labelled as cairn's), and nothing else; it runs with each
run's ``release``, so it is safe to repeat.
"""

from __future__ import annotations

from typing import Any, Final

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from adapters.kubernetes.client import delete_quietly, failure
from adapters.kubernetes.names import MANAGED_BY

LEGACY_POLICIES: Final = ("cairn-storage-apps", "cairn-storage-movers")


def remove_legacy_policies(api: ApiClient, namespace: str) -> list[str]:
    """Deletes cairn's old storage policies in ``namespace``; the names deleted."""
    networking: Any = client.NetworkingV1Api(api)
    selector = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())
    try:
        found = networking.list_namespaced_network_policy(namespace, label_selector=selector)
    except ApiException as exc:
        raise failure(exc, f"listing cairn's NetworkPolicies in {namespace}") from None
    names = sorted(str(p.metadata.name) for p in found.items if p.metadata.name in LEGACY_POLICIES)
    for name in names:
        _delete(networking, namespace, name)
    return names


def _delete(networking: Any, namespace: str, name: str) -> None:
    delete_quietly(
        lambda: networking.delete_namespaced_network_policy(name, namespace),
        f"deleting the NetworkPolicy {namespace}/{name}",
    )

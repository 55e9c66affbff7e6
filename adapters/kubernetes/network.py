"""The NetworkPolicies that let only cairn's mover pods reach the backup storage.

NetworkPolicies are allow-lists, and they add up: a pod that no egress policy selects may
send anywhere; a pod that at least one selects may send only where one of those policies
allows. There is no "deny" rule, so "only movers may reach the storage" is written as two
policies, kept by cairn in every application namespace it works in:

- ``cairn-storage-apps`` selects every pod WITHOUT the mover role label and allows all
  egress (other pods anywhere in the cluster, any address) EXCEPT the storage's addresses
  (``ipBlock.except``). Application pods keep every connection they had, but the storage.
- ``cairn-storage-movers`` selects the pods WITH the mover role label and allows them all
  egress, the storage included. Without it a mover would be caught by a default-deny policy
  the namespace may have; with it, policies the application adds cannot cut a mover off.

Limits, said plainly:

- Because policies add up, another policy in the namespace that allows application pods to
  reach the storage's address (an allow-all egress policy, say) reopens it; cairn cannot
  forbid it from here. The storage side is the second wall: an NFS export or Ceph client
  that accepts only the nodes' storage network (see docs/kubernetes.md).
- A volume (NFS, CephFS) is mounted by the kubelet from the node, not from the pod, so
  NetworkPolicies govern pods connecting to the storage themselves, not the mounts of the
  movers' volumes; which pods may mount what is decided by who may create pods with such
  volumes (RBAC and pod security), again the cluster's side.
- Addresses are IPs or CIDRs; a host name is resolved when the policies are written (each
  run writes them again, so a changed address is followed at the next run).
- It is a matter of labels: whoever may create pods in the namespace may label one as a
  mover. Keeping that label to cairn's service account is admission's job (a
  ValidatingAdmissionPolicy, say), on the cluster's side.
- Other pods of the cluster stay reachable (a ``namespaceSelector: {}`` peer, since
  ``ipBlock`` may not match pod IPs): storage served by pods inside the cluster is not
  covered, only addresses outside it.
- Policies only act where the cluster's network plugin enforces them.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Final

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from adapters.kubernetes.client import failure
from adapters.kubernetes.names import MANAGED_BY
from adapters.platform import PlatformError

ROLE_LABEL: Final = "backup.cairn.io/role"
MOVER_LABELS: Final = {**MANAGED_BY, ROLE_LABEL: "mover"}
APPS_POLICY: Final = "cairn-storage-apps"
MOVERS_POLICY: Final = "cairn-storage-movers"
EVERYWHERE: Final = {4: "0.0.0.0/0", 6: "::/0"}
# Writes of a policy that meet a concurrent writer (409) before one of them gives up.
WRITE_ATTEMPTS: Final = 3


def ensure_mover_policy(api: ApiClient, namespace: str, storage_addresses: list[str]) -> None:
    """Creates or updates both policies in ``namespace`` (safe to repeat)."""
    networks = storage_networks(storage_addresses)
    everything_but_storage: list[dict[str, Any]] = [{"namespaceSelector": {}}]
    for version, cidr in EVERYWHERE.items():
        block: dict[str, Any] = {"cidr": cidr}
        excluded = [str(n) for n in networks if n.version == version]
        if excluded:
            block["except"] = excluded
        everything_but_storage.append({"ipBlock": block})
    policies = {
        APPS_POLICY: {
            "podSelector": {
                "matchExpressions": [
                    {"key": ROLE_LABEL, "operator": "NotIn", "values": [MOVER_LABELS[ROLE_LABEL]]}
                ]
            },
            "policyTypes": ["Egress"],
            "egress": [{"to": everything_but_storage}],
        },
        MOVERS_POLICY: {
            # The complement of the selector above, so every pod is in exactly one.
            "podSelector": {"matchLabels": {ROLE_LABEL: MOVER_LABELS[ROLE_LABEL]}},
            "policyTypes": ["Egress"],
            "egress": [{}],
        },
    }
    networking: Any = client.NetworkingV1Api(api)
    for name, spec in policies.items():
        _ensure(networking, namespace, name, spec)


def storage_networks(
    addresses: list[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Each address as a network (an IP is a /32 or /128); host names resolved, sorted."""
    networks: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for address in addresses:
        networks.update(_networks_of(address))
    return sorted(networks, key=lambda n: (n.version, n))


def _networks_of(address: str) -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """An IP address or network as written, else what the host name resolves to."""
    try:
        return {ipaddress.ip_network(address, strict=False)}
    except ValueError:  # not an address: a host name
        try:
            resolved = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise PlatformError(
                f"the storage address {address!r} does not resolve: {exc}", retryable=True
            ) from None
    return {ipaddress.ip_network(str(info[4][0])) for info in resolved}


def _ensure(networking: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Creates or replaces the policy; a concurrent writer (the movers of one run start at
    once, each writing the policy) answers 409, and the write is made again over its copy."""
    doing = f"writing the NetworkPolicy {name} in {namespace}"
    for attempt in range(WRITE_ATTEMPTS):
        body: dict[str, Any] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": spec,
        }
        try:
            try:
                current = networking.read_namespaced_network_policy(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                networking.create_namespaced_network_policy(namespace, body)
                return
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            networking.replace_namespaced_network_policy(name, namespace, body)
            return
        except ApiException as exc:
            if exc.status != 409 or attempt == WRITE_ATTEMPTS - 1:
                raise failure(exc, doing) from None

"""What a set of NetworkPolicies lets a pod send to an address outside the cluster.

The API fake stores NetworkPolicies without enforcing them (no network plugin); this reads
them as a plugin would for egress to an external IP, so a test can check on the stored
objects that only mover pods may reach the backup storage.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def egress_allowed(policies: list[dict[str, Any]], pod_labels: dict[str, str], ip: str) -> bool:
    """Whether a pod with ``pod_labels`` may connect to ``ip`` (outside the cluster)."""
    address = ipaddress.ip_address(ip)
    selecting = [
        p["spec"]
        for p in policies
        if "Egress" in (p["spec"].get("policyTypes") or [])
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not selecting:
        return True  # a pod no egress policy selects is not isolated
    for spec in selecting:
        for rule in spec.get("egress") or []:
            peers = rule.get("to")
            if not peers:
                return True  # a rule without peers allows every destination
            for peer in peers:
                block = peer.get("ipBlock")
                if (
                    block
                    and _inside(address, block["cidr"])
                    and not any(
                        _inside(address, excluded) for excluded in block.get("except") or []
                    )
                ):
                    return True
    return False


def _inside(address: ipaddress.IPv4Address | ipaddress.IPv6Address, cidr: str) -> bool:
    network = ipaddress.ip_network(cidr)
    return address.version == network.version and address in network

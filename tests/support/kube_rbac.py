"""Is every request cairn made covered by the RBAC rules of deploy/kubernetes/?

The API fake records (verb, API group, resource[/subresource]) of each request; this reads
the ClusterRoles and Roles of the manifests and says which of those no rule allows, so a
test fails when code starts calling something the deployed service account may not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Permission = tuple[str, str, str]  # (verb, group, resource[/subresource])
RBAC_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def rules(rbac_dir: Path) -> list[dict[str, Any]]:
    """The rules of every ClusterRole and Role in the folder's YAML documents."""
    found: list[dict[str, Any]] = []
    for manifest in sorted(rbac_dir.glob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            if document and document.get("kind") in ("ClusterRole", "Role"):
                found += document.get("rules") or []
    return found


def allows(rule: dict[str, Any], permission: Permission) -> bool:
    verb, group, resource = permission
    return (
        any(g in ("*", group) for g in rule.get("apiGroups") or [])
        and any(r in ("*", resource) for r in rule.get("resources") or [])
        and any(v in ("*", verb) for v in rule.get("verbs") or [])
    )


def uncovered(used: set[Permission], rbac_dir: Path = RBAC_DIR) -> set[Permission]:
    """The permissions used that no rule in ``rbac_dir`` grants."""
    granted = rules(rbac_dir)
    return {p for p in used if not any(allows(rule, p) for rule in granted)}

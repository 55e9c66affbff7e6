"""Is cairn's RBAC in deploy/kubernetes/ exactly what cairn uses, namespace by namespace?

The API fake records each request as (namespace, verb, API group, resource[/subresource]);
the namespace is empty for cluster-scoped objects. This reads the Roles, ClusterRoles and
their bindings to cairn's service account from the manifests and says

- which requests no binding allows where they were made (``uncovered``): a Role in cairn's
  namespace allows requests there only; a ClusterRole bound cluster-wide allows them
  everywhere (and is meant for the application namespaces);
- which granted permissions no request used (``unused``), each judged where its role is
  meant to act: a Role's in its namespace, a cluster-wide ClusterRole's in application
  namespaces (namespaced resources) or at cluster scope (cluster-scoped ones).

``SEEN`` collects every request cairn made in this test session (``tests/support/kube.py``
adds to it), so the session can compare the whole with the manifests at its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Permission = tuple[str, str, str, str]  # (namespace or "", verb, group, resource[/sub])
RBAC_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SERVICE_ACCOUNT = ("cairn", "cairn")  # (namespace, name) the API and worker run as
# Which requests of the session were cairn's: filled by CairnCalls.
SEEN: set[Permission] = set()


@dataclass(frozen=True)
class Grant:
    """One rule of a role bound to cairn, and where the binding lets it act ("" for
    everywhere, i.e. cluster-wide)."""

    namespace: str
    rule: dict[str, Any]
    role: str


def _documents(rbac_dir: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for manifest in sorted(rbac_dir.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    return found


def grants(rbac_dir: Path = RBAC_DIR) -> list[Grant]:
    """The rules of every role bound to cairn's service account, with the binding's reach."""
    documents = _documents(rbac_dir)
    roles = {
        (d["kind"], (d["metadata"].get("namespace") or ""), d["metadata"]["name"]): d
        for d in documents
        if d["kind"] in ("ClusterRole", "Role")
    }
    found: list[Grant] = []
    for binding in documents:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount"
            and (s.get("namespace"), s.get("name")) == SERVICE_ACCOUNT
            for s in binding.get("subjects") or []
        ):
            continue
        reach = binding["metadata"].get("namespace") or ""
        ref = binding["roleRef"]
        key = (ref["kind"], reach if ref["kind"] == "Role" else "", ref["name"])
        role = roles.get(key)
        if role is None:
            raise AssertionError(f"{binding['kind']} {binding['metadata']['name']}: no {key}")
        found += [Grant(reach, rule, ref["name"]) for rule in role.get("rules") or []]
    return found


def allows(rule: dict[str, Any], verb: str, group: str, resource: str) -> bool:
    return (
        any(g in ("*", group) for g in rule.get("apiGroups") or [])
        and any(r in ("*", resource) for r in rule.get("resources") or [])
        and any(v in ("*", verb) for v in rule.get("verbs") or [])
    )


def uncovered(used: set[Permission], rbac_dir: Path = RBAC_DIR) -> set[Permission]:
    """The requests made that no binding allows where they were made."""
    granted = grants(rbac_dir)
    return {
        (namespace, verb, group, resource)
        for namespace, verb, group, resource in used
        if not any(
            g.namespace in ("", namespace) and allows(g.rule, verb, group, resource)
            for g in granted
        )
    }


def unused(used: set[Permission], home: str, rbac_dir: Path = RBAC_DIR) -> set[str]:
    """Each granted (role, verb, group, resource) that no request used where it is meant to
    act: a Role's in its namespace; a cluster-wide role's outside cairn's namespace ``home``
    (an application's namespace, or cluster scope)."""
    left: set[str] = set()
    for grant in grants(rbac_dir):
        for group in grant.rule.get("apiGroups") or []:
            for resource in grant.rule.get("resources") or []:
                for verb in grant.rule.get("verbs") or []:
                    if not any(
                        (ns == grant.namespace if grant.namespace else ns != home)
                        and (verb, group, resource) == (v, g, r)
                        for ns, v, g, r in used
                    ):
                        left.add(f"{grant.role}: {verb} {group or 'core'}/{resource}")
    return left


def cluster_roles_creating(kinds: set[tuple[str, str]], rbac_dir: Path = RBAC_DIR) -> set[str]:
    """ClusterRoles whose rules allow ``create`` on any of ``kinds`` ((group, resource))."""
    return {
        f"{d['metadata']['name']}: create {group or 'core'}/{resource}"
        for d in _documents(rbac_dir)
        if d["kind"] == "ClusterRole"
        for rule in d.get("rules") or []
        for group, resource in kinds
        if allows(rule, "create", group, resource)
    }

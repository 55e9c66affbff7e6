"""deploy/kubernetes/ RBAC: its shape, and the checker that compares it with cairn's requests.

Whether the RBAC equals what cairn uses is checked at the end of a session that ran the
Kubernetes tests (``tests/support/kube.py``); here: no ClusterRole hands out pod or Job
creation, and the checker catches both a missing and a superfluous grant.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.kube_rbac import cluster_roles_creating, uncovered, unused


def test_no_cluster_role_lets_cairn_create_pods_or_jobs() -> None:
    assert cluster_roles_creating({("", "pods"), ("batch", "jobs")}) == set()


def test_pods_are_created_by_no_cluster_role_at_all() -> None:
    assert cluster_roles_creating({("", "pods")}) == set()


def _binding(kind: str, role_kind: str, name: str, namespace: str = "") -> dict[str, object]:
    meta: dict[str, str] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "cairn", "namespace": "cairn"}],
    }


def test_the_checker_judges_each_grant_where_its_binding_reaches(tmp_path: Path) -> None:
    documents = [
        {
            "kind": "Role",
            "metadata": {"name": "movers", "namespace": "cairn"},
            "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}],
        },
        _binding("RoleBinding", "Role", "movers", "cairn"),
        {
            "kind": "ClusterRole",
            "metadata": {"name": "apps"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}],
        },
        _binding("ClusterRoleBinding", "ClusterRole", "apps"),
        {  # bound to nobody: grants nothing
            "kind": "ClusterRole",
            "metadata": {"name": "loose"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
    ]
    (tmp_path / "rbac.yaml").write_text(yaml.safe_dump_all(documents))
    used = {("cairn", "create", "batch", "jobs"), ("shop", "get", "", "pods")}
    assert uncovered(used, tmp_path) == set()
    # a Job in an application's namespace: the Role does not reach there
    assert uncovered({("shop", "create", "batch", "jobs")}, tmp_path) == {
        ("shop", "create", "batch", "jobs")
    }
    # pods delete was never used in an application's namespace; a use in cairn's own does
    # not count for a cluster-wide role
    assert unused(used | {("cairn", "delete", "", "pods")}, "cairn", tmp_path) == {
        "apps: delete core/pods"
    }

"""deploy/kubernetes/ manifests: valid for Kubernetes 1.33 (strict: no unknown field), and the
service account the Deployments run as is the one the RBAC bindings name; the movers' account
is bound to nothing."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from adapters.kubernetes.movers import MOVER_SERVICE_ACCOUNT
from tests.support.kube_rbac import RBAC_DIR


def documents() -> list[dict[str, Any]]:
    return [
        document
        for manifest in sorted(RBAC_DIR.glob("*.yaml"))
        for document in yaml.safe_load_all(manifest.read_text())
        if document
    ]


def test_every_manifest_is_valid() -> None:
    for document in documents():
        kubernetes_validate.validate(document, "1.33.0", strict=True)


def test_the_deployments_run_as_the_bound_service_account() -> None:
    found = documents()
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in found
        if d["kind"] == "ServiceAccount"
    }
    bindings = [d for d in found if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    bound = {(s["namespace"], s["name"]) for d in bindings for s in d["subjects"]}
    roles = {d["metadata"]["name"] for d in found if d["kind"] in ("ClusterRole", "Role")}
    assert bound <= set(accounts)
    assert {d["roleRef"]["name"] for d in bindings} == roles
    for deployment in (d for d in found if d["kind"] == "Deployment"):
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert (deployment["metadata"]["namespace"], account) in bound
    # the movers' account: bound to nothing, its token never mounted
    unbound = set(accounts) - bound
    assert unbound == {("cairn", MOVER_SERVICE_ACCOUNT)}
    assert all(accounts[a]["automountServiceAccountToken"] is False for a in unbound)

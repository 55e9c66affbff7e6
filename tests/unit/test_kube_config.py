"""ConfigMaps and Secrets exported as one document and applied back, against the API fake."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from adapters.kubernetes.config import FORMAT, apply_objects, export_objects
from adapters.platform import PlatformError
from tests.support import kube as fixtures
from tests.support.kube import CairnCalls, core
from tests.support.kube_rbac import uncovered

kube, kube_api, namespace, cairn = (
    fixtures.kube,
    fixtures.kube_api,
    fixtures.namespace,
    fixtures.cairn,
)
rbac_equals_what_cairn_used = fixtures.rbac_equals_what_cairn_used
ALL = {"include": "all"}


def fill(api: client.ApiClient, ns: str) -> None:
    v1 = core(api)
    v1.create_namespaced_config_map(
        ns, {"metadata": {"name": "settings", "labels": {"app": "shop"}}, "data": {"mode": "live"}}
    )
    v1.create_namespaced_config_map(
        ns, {"metadata": {"name": "ops", "labels": {"app": "ops"}}, "data": {"x": "1"}}
    )
    v1.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "db", "labels": {"app": "shop"}, "annotations": {"note": "pw"}},
            "stringData": {"password": "s3cret"},
        },
    )
    v1.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "run", "labels": {"app.kubernetes.io/managed-by": "cairn"}},
            "stringData": {"RESTIC_PASSWORD": "repo"},
        },
    )
    v1.create_namespaced_secret(
        ns,
        {
            "metadata": {
                "name": "token",
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "kube-root-ca.crt"}, "data": {}})


def test_export_is_deterministic_and_keeps_only_what_the_application_owns(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    fill(kube_api, namespace)
    first = cairn(export_objects, kube_api, namespace, ALL)
    assert cairn(export_objects, kube_api, namespace, ALL) == first
    document = json.loads(first)
    assert document["format"] == FORMAT
    assert [c["metadata"]["name"] for c in document["configmaps"]] == ["ops", "settings"]
    assert [s["metadata"]["name"] for s in document["secrets"]] == ["db"]
    assert document["secrets"][0] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "labels": {"app": "shop"}, "annotations": {"note": "pw"}},
        "data": {"password": base64.b64encode(b"s3cret").decode()},
        "type": "Opaque",
    }
    for field in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "namespace"):
        assert field not in first.decode()

    selected = json.loads(
        cairn(export_objects, kube_api, namespace, {"include": "selector", "selector": "app=shop"})
    )
    assert [c["metadata"]["name"] for c in selected["configmaps"]] == ["settings"]
    assert [s["metadata"]["name"] for s in selected["secrets"]] == ["db"]
    nothing = json.loads(cairn(export_objects, kube_api, namespace, {"include": "none"}))
    assert nothing["configmaps"] == nothing["secrets"] == []


def test_apply_puts_back_what_was_damaged_and_is_idempotent(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    fill(kube_api, namespace)
    document = cairn(export_objects, kube_api, namespace, ALL)
    v1 = core(kube_api)
    v1.delete_namespaced_config_map("settings", namespace)
    v1.patch_namespaced_secret("db", namespace, {"stringData": {"password": "changed"}})
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "new"}, "data": {}})

    said = cairn(apply_objects, kube_api, namespace, document)
    assert said.endswith(": 3 ConfigMaps and Secrets (1 created, 1 replaced, 1 unchanged)")
    assert v1.read_namespaced_config_map("settings", namespace).data == {"mode": "live"}
    assert (
        base64.b64decode(v1.read_namespaced_secret("db", namespace).data["password"]) == b"s3cret"
    )
    assert v1.read_namespaced_config_map("new", namespace)  # not in the backup: left alone
    v1.delete_namespaced_config_map("new", namespace)
    assert cairn(export_objects, kube_api, namespace, ALL) == document
    again = cairn(apply_objects, kube_api, namespace, document)
    assert again.endswith("(3 unchanged)")


def test_apply_into_another_namespace_and_over_an_immutable_object(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    fill(kube_api, namespace)
    document = cairn(export_objects, kube_api, namespace, ALL)
    clone = f"{namespace}-clone"
    v1 = core(kube_api)
    v1.create_namespace({"metadata": {"name": clone}})
    try:
        v1.create_namespaced_config_map(
            clone, {"metadata": {"name": "settings"}, "data": {"mode": "old"}, "immutable": True}
        )
        said = cairn(apply_objects, kube_api, clone, document)
        assert "2 created, 1 replaced" in said
        assert v1.read_namespaced_config_map("settings", clone).data == {"mode": "live"}
        assert cairn(export_objects, kube_api, clone, ALL) == document
    finally:
        v1.delete_namespace(clone)


def test_apply_keeps_owners_and_finalizers_and_leaves_controlled_objects_alone(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    """A restored object keeps what others put on it since; a Secret a controller writes (a
    SealedSecret's) is reported, not overwritten: the controller would undo it."""
    fill(kube_api, namespace)
    document = cairn(export_objects, kube_api, namespace, ALL)
    v1 = core(kube_api)
    ops = v1.read_namespaced_config_map("ops", namespace)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ops", "uid": ops.metadata.uid}
    v1.patch_namespaced_config_map(
        "settings",
        namespace,
        {
            "metadata": {
                "ownerReferences": [owner],
                "finalizers": ["example.com/keep"],
                "labels": {"added": "later"},
            },
            "data": {"mode": "broken", "extra": "x"},
        },
    )
    sealed = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "name": "db",
        "uid": "5b1c7a52-0d5c-4c55-9f6a-3c1f0d5e8a11",
        "controller": True,
    }
    v1.patch_namespaced_secret(
        "db",
        namespace,
        {"metadata": {"ownerReferences": [sealed]}, "stringData": {"password": "rotated"}},
    )
    try:
        said = cairn(apply_objects, kube_api, namespace, document)
        settings = v1.read_namespaced_config_map("settings", namespace)
        assert settings.data == {"mode": "live"}
        assert settings.metadata.labels == {"app": "shop"}
        assert [r.uid for r in settings.metadata.owner_references] == [ops.metadata.uid]
        assert settings.metadata.finalizers == ["example.com/keep"]
        db = v1.read_namespaced_secret("db", namespace)
        assert base64.b64decode(db.data["password"]) == b"rotated"
        assert said.endswith(
            "(1 replaced, 1 unchanged, 1 left to their controllers: Secret db (SealedSecret db))"
        )
    finally:
        v1.patch_namespaced_config_map("settings", namespace, {"metadata": {"finalizers": None}})


def test_a_document_that_is_not_one_is_refused(
    kube_api: client.ApiClient, namespace: str, cairn: CairnCalls
) -> None:
    with pytest.raises(PlatformError, match=r"not a cairn\.kubernetes\.config/v1 document"):
        cairn(apply_objects, kube_api, namespace, b'{"items": []}')
    with pytest.raises(PlatformError, match="not JSON"):
        cairn(apply_objects, kube_api, namespace, b"\x00")
    with pytest.raises(PlatformError, match="needs a selector"):  # never "all" by mistake
        cairn(export_objects, kube_api, namespace, {"include": "selector", "selector": None})


def test_rbac_covers_every_call(cairn: CairnCalls) -> None:
    assert cairn.used, "the tests above ran no cairn call"
    assert uncovered(cairn.used) == set()

"""An application's ConfigMaps and Secrets as one document, and that document applied back.

The document is what the repository stores as the backup's configuration part (Secrets are
only ever in the encrypted repository). It keeps what the application owns — name, labels,
annotations, data, binaryData, type, immutable — and drops what the API server manages
(uid, resourceVersion, creationTimestamp, managedFields, generation, ownerReferences,
finalizers, status) and the namespace, so it applies as well into another namespace (a
clone of the application). It is deterministic (sorted objects and keys): the same objects
give the same bytes, so an unchanged configuration deduplicates in the repository.

Left out because the cluster, not the application, makes them: the ``kube-root-ca.crt``
ConfigMap every namespace gets, service-account token Secrets, and cairn's own objects
(label ``app.kubernetes.io/managed-by=cairn``: the short-lived run Secrets of the movers).

Applying creates what is missing and patches what differs (a merge patch of the labels,
annotations and data, so owners and finalizers stay); an object a controller owns is left to
it and reported; objects that exist now but are not in the document are left alone (a
restore puts back, it does not prune).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient, ApiException

from adapters.kubernetes.client import Kube, failure
from adapters.kubernetes.names import MANAGED_BY
from adapters.platform import PlatformError

FORMAT = "cairn.kubernetes.config/v1"
KINDS = {"ConfigMap": "config_map", "Secret": "secret"}
SECTIONS = {"ConfigMap": "configmaps", "Secret": "secrets"}
KEPT = ("data", "binaryData", "type", "immutable")
CLUSTER_CONFIGMAPS = frozenset({"kube-root-ca.crt"})
CLUSTER_SECRET_TYPES = frozenset({"kubernetes.io/service-account-token"})


def export_objects(api: ApiClient, namespace: str, selection: dict[str, Any]) -> bytes:
    """The selected ConfigMaps and Secrets of ``namespace`` (``include`` all, none, selector)."""
    include = selection.get("include", "all")
    if include not in ("all", "none", "selector"):
        raise PlatformError(
            f"config include {include!r} is not all, none or selector", retryable=False
        )
    selector = selection.get("selector") if include == "selector" else None
    if include == "selector" and not selector:
        raise PlatformError("config include 'selector' needs a selector", retryable=False)
    document: dict[str, Any] = {"format": FORMAT, "configmaps": [], "secrets": []}
    if include != "none":
        kube = Kube(api)
        for kind, snake in KINDS.items():
            try:
                listed = getattr(kube.core, f"list_namespaced_{snake}")(
                    namespace, label_selector=selector
                )
            except ApiException as exc:
                raise failure(exc, f"listing the {SECTIONS[kind]} of {namespace}") from None
            found = [_portable(kind, _as_dict(api, o)) for o in listed.items]
            document[SECTIONS[kind]] = sorted(
                (o for o in found if _owned_by_application(o)), key=lambda o: o["metadata"]["name"]
            )
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def apply_objects(api: ApiClient, namespace: str, document: bytes) -> str:
    """Creates or patches each object of ``document`` in ``namespace``; says what it did."""
    parsed = _parse(document)
    kube = Kube(api)
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    owned: list[str] = []
    for kind, snake in KINDS.items():
        for obj in parsed[SECTIONS[kind]]:
            done = _apply(kube, api, namespace, kind, snake, obj)
            if done in counts:
                counts[done] += 1
            else:
                owned.append(done)
    total = sum(counts.values()) + len(owned)
    said = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    if owned:
        said += f"{', ' if said else ''}{len(owned)} left to their controllers: {', '.join(owned)}"
    return f"configuration of {namespace}: {total} ConfigMaps and Secrets ({said or 'none'})"


def _portable(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the application owns it, without anything the API server manages."""
    meta = obj.get("metadata") or {}
    kept_meta = {"name": meta["name"]}
    for key in ("labels", "annotations"):
        if meta.get(key):
            kept_meta[key] = meta[key]
    portable = {"apiVersion": "v1", "kind": kind, "metadata": kept_meta}
    portable.update({key: obj[key] for key in KEPT if obj.get(key) is not None})
    return portable


def _as_dict(api: ApiClient, model: Any) -> dict[str, Any]:
    """A client model as the API server's JSON (its field names, no empty fields)."""
    as_json: dict[str, Any] = api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return as_json


def _owned_by_application(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    if any(labels.get(key) == value for key, value in MANAGED_BY.items()):
        return False
    if obj["kind"] == "ConfigMap":
        return obj["metadata"]["name"] not in CLUSTER_CONFIGMAPS
    return obj.get("type") not in CLUSTER_SECRET_TYPES


def _parse(document: bytes) -> dict[str, list[dict[str, Any]]]:
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise PlatformError(
            f"the configuration document is not JSON: {exc}", retryable=False
        ) from None
    if not isinstance(parsed, dict) or parsed.get("format") != FORMAT:
        raise PlatformError(
            f"the configuration document is not a {FORMAT} document", retryable=False
        )
    return {section: list(parsed.get(section) or []) for section in SECTIONS.values()}


def _apply(
    kube: Kube, api: ApiClient, namespace: str, kind: str, snake: str, obj: dict[str, Any]
) -> str:
    """``created``, ``replaced``, ``unchanged``, or the object and its controller when one
    manages it (a SealedSecret's Secret, say: the controller would undo the restore, or
    refuse to manage an object it did not write)."""
    name = obj["metadata"]["name"]
    doing = f"restoring {kind} {name} in {namespace}"
    body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    try:
        try:
            current = getattr(kube.core, f"read_namespaced_{snake}")(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            getattr(kube.core, f"create_namespaced_{snake}")(namespace, body)
            return "created"
        now = _portable(kind, _as_dict(api, current))
        if now == obj:
            return "unchanged"
        controller = next(
            (r for r in current.metadata.owner_references or [] if r.controller), None
        )
        if controller is not None:
            return f"{kind} {name} ({controller.kind} {controller.name})"
        if now.get("immutable") or now.get("type") != obj.get("type"):
            # Immutable data or another Secret type: only a new object can hold it; it keeps
            # the owners and finalizers of the one it replaces.
            meta = body["metadata"]
            meta["ownerReferences"] = _as_dict(api, current.metadata).get("ownerReferences")
            meta["finalizers"] = current.metadata.finalizers
            getattr(kube.core, f"delete_namespaced_{snake}")(name, namespace)
            getattr(kube.core, f"create_namespaced_{snake}")(namespace, body)
        else:
            getattr(kube.core, f"patch_namespaced_{snake}")(
                name, namespace, _merge_patch(now, obj, current.metadata.resource_version)
            )
        return "replaced"
    except ApiException as exc:
        raise failure(exc, doing) from None


def _merge_patch(now: dict[str, Any], wanted: dict[str, Any], version: str) -> dict[str, Any]:
    """A JSON merge patch from ``now`` to ``wanted`` over what the document holds (labels,
    annotations, data): what the API server and controllers keep (owners, finalizers, ...)
    is not touched. Guarded by ``version``: a concurrent change is a 409, retried."""

    def replacing(key: str, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: None for k in old.get(key) or {} if k not in (new.get(key) or {})},
            **(new.get(key) or {}),
        }

    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": version,
            **{
                key: replacing(key, now["metadata"], wanted["metadata"])
                for key in ("labels", "annotations")
            },
        }
    }
    for key in ("data", "binaryData"):
        patch[key] = replacing(key, now, wanted) or None
    return patch

"""CSI VolumeSnapshots of an application's claims, and claims restored from them.

A snapshot is waited for until ``readyToUse``; a driver that never gets there (no sidecar,
a broken class) ends in a timeout error naming the snapshot and what it last reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from kubernetes.client import ApiException

from adapters.kubernetes.client import Kube, create_or_keep, delete_quietly, failure, wait_for

GROUP: Final = "snapshot.storage.k8s.io"
VERSION: Final = "v1"
PLURAL: Final = "volumesnapshots"


def take(
    kube: Kube,
    namespace: str,
    name: str,
    claim: str,
    snapshot_class: str | None,
    labels: dict[str, str],
) -> None:
    """Asks for a snapshot of ``claim`` named ``name``, unless a retry finds it made."""
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": claim}}
    if snapshot_class:
        spec["volumeSnapshotClassName"] = snapshot_class
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
    create_or_keep(
        lambda: kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        ),
        f"creating the VolumeSnapshot {name} of claim {claim}",
    )


def _read(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        raise failure(exc, f"reading the VolumeSnapshot {name}") from None
    return found


def wait_ready(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    timeout: float,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The snapshot's status once it is ready to use."""
    last: dict[str, Any] = {}

    def ready() -> dict[str, Any] | None:
        status = _read(kube, namespace, name).get("status") or {}
        last.clear()
        last.update(status)
        return status if status.get("readyToUse") else None

    def expired() -> str:
        error = (last.get("error") or {}).get("message")
        seen = f"it reports: {error}" if error else "it never reported readyToUse"
        return (
            f"the VolumeSnapshot {namespace}/{name} was not ready within {timeout:g} s; {seen}"
            " (is the VolumeSnapshotClass's CSI driver running?)"
        )

    return wait_for(ready, timeout=timeout, expired=expired, tick=tick)


def claim_like(
    kube: Kube,
    namespace: str,
    name: str,
    source: dict[str, Any],
    labels: dict[str, str],
    *,
    snapshot: str | None = None,
    size: str | int | None = None,
) -> None:
    """A claim named ``name`` shaped like ``source`` (access modes, class, size), empty or
    restored from ``snapshot``; a retry finds the one it made."""
    spec = source.get("spec") or {}
    size = size or ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    claim: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(size)}},
        },
    }
    if snapshot is not None:
        claim["spec"]["dataSource"] = {
            "apiGroup": GROUP,
            "kind": "VolumeSnapshot",
            "name": snapshot,
        }
    if spec.get("storageClassName"):
        claim["spec"]["storageClassName"] = spec["storageClassName"]
    create_or_keep(
        lambda: kube.core.create_namespaced_persistent_volume_claim(namespace, claim),
        f"creating the claim {name}",
    )


def delete(kube: Kube, namespace: str, name: str) -> None:
    delete_quietly(
        lambda: kube.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        ),
        f"deleting the VolumeSnapshot {name}",
    )


def list_names(kube: Kube, namespace: str, selector: str) -> list[str]:
    try:
        found = kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector
        )
    except ApiException as exc:
        raise failure(exc, "listing the run's VolumeSnapshots") from None
    return [str(item["metadata"]["name"]) for item in found.get("items", [])]

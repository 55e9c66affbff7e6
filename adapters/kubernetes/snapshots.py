"""CSI VolumeSnapshots of an application's claims, and claims restored from them.

A snapshot is waited for until ``readyToUse``; a driver that never gets there (no sidecar,
a broken class) ends in a timeout error naming the snapshot and what it last reported.

Only a claim's own CSI driver can snapshot it, so the class is chosen per claim, by the
driver that provisioned it: a class of another driver would only time out. And whatever the
class's ``deletionPolicy``, a snapshot cairn deletes takes its VolumeSnapshotContent (and the
storage's snapshot) with it: the content is switched to ``Delete`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from kubernetes.client import ApiException

from adapters.kubernetes.client import Kube, create_or_keep, delete_quietly, failure, wait_for
from adapters.kubernetes.rebind import REBIND
from adapters.platform import PlatformError

GROUP: Final = "snapshot.storage.k8s.io"
VERSION: Final = "v1"
PLURAL: Final = "volumesnapshots"
CLASSES: Final = "volumesnapshotclasses"
CONTENTS: Final = "volumesnapshotcontents"
DEFAULT_CLASS: Final = "snapshot.storage.kubernetes.io/is-default-class"
# Written on a claim by the PV controller: the CSI driver that provisions its volume.
PROVISIONER: Final = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
# Written on a claim by the scheduler (WaitForFirstConsumer): the node it is provisioned for.
SELECTED_NODE: Final = "volume.kubernetes.io/selected-node"


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


def list_classes(kube: Kube) -> list[dict[str, Any]]:
    try:
        found = kube.custom.list_cluster_custom_object(GROUP, VERSION, CLASSES)
    except ApiException as exc:
        raise failure(exc, "listing the VolumeSnapshotClasses") from None
    return list(found.get("items") or [])


def class_for(
    claim: dict[str, Any], classes: list[dict[str, Any]], *preferred: str | None
) -> str | None:
    """The class for ``claim``'s CSI driver: the first ``preferred`` class (the application's,
    then cairn's default) of that driver, else the driver's default class, else its only one.
    A claim without a known driver (a volume provisioned by hand) gets the first preferred
    class, or the cluster's default (None)."""
    meta = claim.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    driver = next((annotations[key] for key in PROVISIONER if annotations.get(key)), None)
    if driver is None:
        return next((name for name in preferred if name), None)
    own = [c for c in classes if c.get("driver") == driver]
    names = [str(c["metadata"]["name"]) for c in own]
    defaults = [
        str(c["metadata"]["name"])
        for c in own
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    ]
    matching = [name for name in preferred if name in names]
    if matching:
        return matching[0]
    if len(defaults) == 1:
        return defaults[0]
    if len(names) == 1:
        return names[0]
    raise PlatformError(
        f"no VolumeSnapshotClass can snapshot the claim {meta.get('name')}, provisioned by the"
        f" CSI driver {driver}: "
        + (
            f"{len(names)} classes of that driver ({', '.join(names)}), none marked {DEFAULT_CLASS}"
            if names
            else "the cluster has no class of that driver"
        ),
        retryable=False,
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
    same_access: bool = False,
) -> None:
    """A claim named ``name`` shaped like ``source`` (class, volume mode, size, node),
    empty or restored from ``snapshot``; a retry finds the one it made.

    Only one mover mounts it: ``ReadWriteOnce``, whatever the source's modes (a driver may
    offer ``ReadWriteMany`` only for some volumes, and it costs more); unless its volume is
    to be bound to a claim like the source later (``same_access``: the binder checks modes).
    It is provisioned for the source's node (its ``selected-node`` annotation), where a
    zonal or node-local driver can restore the source's snapshot; the mover that mounts it
    is kept to the source volume's topology too (``node_affinity``).
    """
    spec = source.get("spec") or {}
    size = size or ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    claim: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels, "annotations": {}},
        "spec": {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"])
            if same_access
            else ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
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
    node = ((source.get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE)
    if node:
        claim["metadata"]["annotations"][SELECTED_NODE] = node
    create_or_keep(
        lambda: kube.core.create_namespaced_persistent_volume_claim(namespace, claim),
        f"creating the claim {name}",
    )


def node_affinity(kube: Kube, source: dict[str, Any]) -> dict[str, Any] | None:
    """The node selector of the source claim's volume (``spec.nodeAffinity.required``): where
    its storage can be reached, and so where a copy of it is provisioned and read."""
    volume = (source.get("spec") or {}).get("volumeName")
    if not volume:
        return None
    try:
        found = kube.core.read_persistent_volume(volume)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise failure(exc, f"reading the volume {volume}") from None
    serialized = kube.api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    required = ((serialized.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    return dict(required) if required else None


def delete_claim(kube: Kube, namespace: str, name: str) -> None:
    """Deletes a claim cairn made and, through a ``Delete`` reclaim policy set first on its
    PersistentVolume, the volume and its storage: a StorageClass that ``Retain``s would
    otherwise leave a ``Released`` volume behind each run. A restored volume being handed
    over to an application's claim (``rebind.REBIND`` on it) is left alone, with its claim:
    the hand-over is finished by the resume, not undone."""
    try:
        claim = kube.core.read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise failure(exc, f"reading the claim {name}") from None
    volume = claim.spec.volume_name
    if volume:
        try:
            found = kube.core.read_persistent_volume(volume)
            if REBIND in (found.metadata.annotations or {}):
                return
            kube.core.patch_persistent_volume(
                volume, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
            )
        except ApiException as exc:
            if exc.status != 404:  # a volume already gone is as good
                raise failure(exc, f"setting the volume {volume} to be deleted") from None
    delete_quietly(
        lambda: kube.core.delete_namespaced_persistent_volume_claim(name, namespace),
        f"deleting the claim {name}",
    )


def delete(kube: Kube, namespace: str, name: str) -> None:
    """Deletes the snapshot and, through a ``Delete`` policy set first, its content."""
    try:
        found = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise failure(exc, f"reading the VolumeSnapshot {name}") from None
    content = (found.get("status") or {}).get("boundVolumeSnapshotContentName")
    if content:
        delete_quietly(  # a content already gone is as good
            lambda: kube.custom.patch_cluster_custom_object(
                GROUP, VERSION, CONTENTS, content, {"spec": {"deletionPolicy": "Delete"}}
            ),
            f"setting the deletion policy of the VolumeSnapshotContent {content}",
        )
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

"""An application's VolumeSnapshot cloned into cairn's own namespace, where movers read it.

A VolumeSnapshot is namespaced: a claim can only be restored from a snapshot of its own
namespace. The CSI snapshotter's static provisioning crosses that line: a new
VolumeSnapshotContent pointing at the same storage snapshot (``snapshotHandle``), pre-bound
to a new VolumeSnapshot in cairn's namespace. The clone's content is ``Retain``: deleting it
leaves the storage's snapshot to the application's own content, which cairn deletes (with a
``Delete`` policy) once the upload is done. So the temporary claim, the mover, the run
Secret and the backup storage's mount all live in cairn's namespace, none in the
application's.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiException

from adapters.kubernetes.client import Kube, create_or_keep, delete_quietly, failure
from adapters.kubernetes.snapshots import CONTENTS, GROUP, PLURAL, VERSION
from adapters.platform import PlatformError


def clone(
    kube: Kube,
    namespace: str,
    snapshot: str,
    home: str,
    name: str,
    labels: dict[str, str],
) -> None:
    """A VolumeSnapshot ``home/name`` of the same storage snapshot as the ready
    ``namespace/snapshot``, through a content of the same name; a retry keeps what it finds."""
    try:
        found = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, snapshot
        )
        bound = (found.get("status") or {}).get("boundVolumeSnapshotContentName")
        original = kube.custom.get_cluster_custom_object(GROUP, VERSION, CONTENTS, str(bound))
    except ApiException as exc:
        raise failure(exc, f"reading the VolumeSnapshot {snapshot} and its content") from None
    handle = (original.get("status") or {}).get("snapshotHandle")
    if not handle:
        raise PlatformError(
            f"the VolumeSnapshotContent {bound} of {namespace}/{snapshot} has no snapshotHandle",
            retryable=False,
        )
    spec: dict[str, Any] = {
        "deletionPolicy": "Retain",  # the storage's snapshot is the application content's
        "driver": original["spec"]["driver"],
        "source": {"snapshotHandle": handle},
        "volumeSnapshotRef": {"name": name, "namespace": home},
    }
    for key in ("volumeSnapshotClassName", "sourceVolumeMode"):
        if original["spec"].get(key):
            spec[key] = original["spec"][key]
    content = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }
    create_or_keep(
        lambda: kube.custom.create_cluster_custom_object(GROUP, VERSION, CONTENTS, content),
        f"creating the VolumeSnapshotContent {name}",
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": labels},
        "spec": {"source": {"volumeSnapshotContentName": name}},
    }
    create_or_keep(
        lambda: kube.custom.create_namespaced_custom_object(GROUP, VERSION, home, PLURAL, body),
        f"creating the VolumeSnapshot {home}/{name}",
    )


def remove(kube: Kube, home: str, name: str) -> None:
    """Deletes the clone: its snapshot, then its content (the storage's snapshot stays)."""
    delete_quietly(
        lambda: kube.custom.delete_namespaced_custom_object(GROUP, VERSION, home, PLURAL, name),
        f"deleting the VolumeSnapshot {home}/{name}",
    )
    delete_quietly(
        lambda: kube.custom.delete_cluster_custom_object(GROUP, VERSION, CONTENTS, name),
        f"deleting the VolumeSnapshotContent {name}",
    )


def list_names(kube: Kube, selector: str) -> list[str]:
    """The clones' contents labelled ``selector`` (a run's)."""
    try:
        found = kube.custom.list_cluster_custom_object(
            GROUP, VERSION, CONTENTS, label_selector=selector
        )
    except ApiException as exc:
        raise failure(exc, "listing the VolumeSnapshotContents of a run") from None
    return [str(item["metadata"]["name"]) for item in found.get("items") or []]

"""The VolumeSnapshotClass chosen for a claim: one of its own CSI driver, or a clear error at
once (a class of another driver would only let the snapshot time out)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.kubernetes.snapshots import DEFAULT_CLASS, class_for
from adapters.platform import PlatformError

BLOCK, FILES = "block.csi.example.com", "files.csi.example.com"


def snapshot_class(name: str, driver: str, *, default: bool = False) -> dict[str, Any]:
    annotations = {DEFAULT_CLASS: "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations}, "driver": driver}


def claim(driver: str | None) -> dict[str, Any]:
    annotations = {"volume.kubernetes.io/storage-provisioner": driver} if driver else {}
    return {"metadata": {"name": "data", "annotations": annotations}}


CLASSES = [
    snapshot_class("block-fast", BLOCK),
    snapshot_class("block-default", BLOCK, default=True),
    snapshot_class("files", FILES),
]


def test_a_preferred_class_is_used_for_claims_of_its_driver_only() -> None:
    assert class_for(claim(BLOCK), CLASSES, "block-fast", None) == "block-fast"
    assert class_for(claim(FILES), CLASSES, "block-fast", None) == "files"  # its only class
    assert class_for(claim(BLOCK), CLASSES, None, "files") == "block-default"
    assert class_for(claim(BLOCK), CLASSES, "absent", "block-fast") == "block-fast"


def test_a_claim_without_a_known_driver_gets_the_preference_or_the_cluster_default() -> None:
    assert class_for(claim(None), CLASSES, None, "block-fast") == "block-fast"
    assert class_for(claim(None), CLASSES, None, None) is None


def test_no_class_of_the_driver_is_said_at_once() -> None:
    with pytest.raises(PlatformError) as none:
        class_for(claim("nfs.csi.k8s.io"), CLASSES, None, None)
    assert "provisioned by the CSI driver nfs.csi.k8s.io" in str(none.value)
    assert "the cluster has no class of that driver" in str(none.value)
    assert not none.value.retryable
    two = [snapshot_class("a", FILES), snapshot_class("b", FILES)]
    with pytest.raises(PlatformError) as ambiguous:
        class_for(claim(FILES), two, None, None)
    assert "2 classes of that driver (a, b), none marked" in str(ambiguous.value)

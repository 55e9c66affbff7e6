"""The resources the fake serves, and the discovery documents built from them.

Names, kinds, short names, scopes, verbs and categories are those of a Kubernetes 1.33 API
server (``kubectl api-resources -o wide``) and, for snapshot.storage.k8s.io, of the
external-snapshotter CRDs vendored in ``snapshot_crds.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "1.33.0"  # also picks the kubernetes-validate schemas
CSI_DRIVER = "fake.csi.cairn.dev"  # the driver the fake's provisioner and snapshotter serve
STORAGE_CLASS = "fake-csi"  # the name the DefaultStorageClass admission gives claims
# A second CSI driver, for claims of this storage class (as a cluster with block and shared
# file storage): its snapshots need a VolumeSnapshotClass of its own driver.
SECOND_CSI_DRIVER = "shared.csi.cairn.dev"
SECOND_STORAGE_CLASS = "fake-csi-shared"
DRIVERS = {STORAGE_CLASS: CSI_DRIVER, SECOND_STORAGE_CLASS: SECOND_CSI_DRIVER}
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SNAPSHOT_CRDS = Path(__file__).with_name("snapshot_crds.json")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # served ones: "scale", "log"
    crd: bool = False  # served by the apiextensions machinery (no strategic merge patch)
    has_generation: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


_ALL = ("all",)
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), has_generation=False),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), _ALL, ("log",), has_generation=False),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    ResourceType(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        False,
        ("sc",),
        has_generation=False,
    ),
    ResourceType("", "v1", "secrets", "Secret", True, has_generation=False),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), has_generation=False),
    ResourceType(
        "", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), has_generation=False
    ),
    ResourceType("", "v1", "events", "Event", True, ("ev",), has_generation=False),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), _ALL, ("scale",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), _ALL, ("scale",)),
    ResourceType("batch", "v1", "jobs", "Job", True, (), _ALL),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
)


@cache
def snapshot_crds() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SNAPSHOT_CRDS.read_text())
    return data


def _crd_resources() -> tuple[ResourceType, ...]:
    result = []
    for plural, crd in snapshot_crds()["crds"].items():
        names = crd["names"]
        result.append(
            ResourceType(
                crd["group"],
                crd["version"],
                plural,
                names["kind"],
                crd["scope"] == "Namespaced",
                tuple(names.get("shortNames", ())),
                tuple(names.get("categories", ())),
                crd=True,
            )
        )
    return tuple(result)


ALL_RESOURCES: tuple[ResourceType, ...] = RESOURCES + _crd_resources()
BY_PATH: dict[tuple[str, str, str], ResourceType] = {
    (r.group, r.version, r.plural): r for r in ALL_RESOURCES
}
BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in ALL_RESOURCES}


def lookup(group: str, plural: str) -> ResourceType:
    for resource in ALL_RESOURCES:
        if resource.key == (group, plural):
            return resource
    raise KeyError((group, plural))


def group_versions() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for r in ALL_RESOURCES:
        versions = groups.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return groups


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    """``GET /apis`` (the legacy discovery document, which every client still accepts)."""
    groups = [_group(n, v) for n, v in group_versions().items() if n]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = group_versions().get(name)
    if not name or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<group>/<version>``: an APIResourceList."""
    served = [r for r in ALL_RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for r in served:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(ALL_VERBS) if r.plural != "namespaces" else _namespace_verbs(),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            if sub == "scale":
                entries.append(
                    {
                        "name": f"{r.plural}/scale",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
            elif sub == "log":
                entries.append(
                    {
                        "name": f"{r.plural}/log",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get"],
                    }
                )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def _namespace_verbs() -> list[str]:
    # The API server has no deletecollection on namespaces.
    return [v for v in ALL_VERBS if v != "deletecollection"]


def version_info() -> dict[str, str]:
    major, minor, _ = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }

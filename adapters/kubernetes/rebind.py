"""An application's claim re-bound to a volume restored beside it: no double space, the claim
keeps its name, and no mover ever runs in the application's namespace.

A claim cannot be renamed and the workloads name it, and a pod can only mount a claim of its
own namespace. So a volume is restored by a mover in cairn's namespace into a new claim
there shaped like the application's (``snapshots.claim_like``), and once that mover has
finished, the new PersistentVolume is handed over, as an administrator moves a volume
between claims by hand:

1. both volumes are set to ``Retain`` and the operation is written on the new volume
   (``REBIND``: which claim, which volumes, the old volume's reclaim policy, the claim's
   shape): from here on any resume finishes it;
2. the staging claim in cairn's namespace is deleted (the new volume is ``Released``, kept);
3. the application's claim is deleted (its workloads are stopped; the old volume is kept);
4. the new volume's ``claimRef`` is pointed at the application's namespace and claim name
   (no uid: Available, pre-bound to that claim only);
5. the claim is created again, the same name, labels, annotations, class, modes and size,
   with ``spec.volumeName`` the new volume, and waited for until Bound;
6. the old volume gets its reclaim policy back (``Delete``: the cluster deletes it and its
   storage; ``Retain``: it stays ``Released``, as its class promises, annotated with the
   restore that replaced it, ``REPLACED``, for an administrator to delete), the new one
   takes it, and the record is removed.

Every step finds its own work done when repeated. Before step 1 the application's claim was
never touched (a failed restore leaves only the staging claim, which ``release`` deletes);
after it, ``finish`` completes the swap from wherever it was cut: the new volume is whole
(step 1 comes after its mover succeeded), so the application never sees a half-restored
volume, and it is never left without its claim once a resume ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Final

from kubernetes.client import ApiException

from adapters.kubernetes.client import (
    Kube,
    create_or_keep,
    delete_quietly,
    failure,
    read_or_none,
    wait_for,
)
from adapters.platform import PlatformError

# On the new PersistentVolume while its hand-over runs: the Rebind, as JSON.
REBIND: Final = "backup.cairn.io/rebind"
# On a volume cairn restored: {"run", "files", "bytes"} its mover counted before the hand-over.
FIGURES: Final = "backup.cairn.io/restored-figures"
# On an application's former volume that its class Retains: the restore that replaced it.
REPLACED: Final = "backup.cairn.io/replaced-by-restore"
# What the PV controller writes on a claim it binds; not carried over to the new claim.
_BINDING: Final = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
)


@dataclass(frozen=True)
class Rebind:
    """One hand-over: the application's ``namespace/claim`` from volume ``old`` to ``new``."""

    run: str
    namespace: str
    claim: str
    old: str
    new: str
    policy: str  # the old volume's reclaim policy, given back to both at the end
    home: str  # cairn's namespace, where the staging claim is
    staging: str
    shape: dict[str, Any]  # the claim's labels, annotations and spec, to create it again

    @classmethod
    def parse(cls, text: str) -> Rebind:
        return cls(**json.loads(text))


def shape_of(claim: dict[str, Any]) -> dict[str, Any]:
    """What a claim is created again with: its labels, its own annotations, its spec without
    the volume it was bound to."""
    meta, spec = claim.get("metadata") or {}, dict(claim.get("spec") or {})
    spec.pop("volumeName", None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _BINDING}
    return {"labels": meta.get("labels") or {}, "annotations": annotations, "spec": spec}


def read_volume(kube: Kube, name: str) -> dict[str, Any] | None:
    return read_or_none(
        kube, lambda: kube.core.read_persistent_volume(name), f"reading the volume {name}"
    )


def read_claim(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return read_or_none(
        kube,
        lambda: kube.core.read_namespaced_persistent_volume_claim(name, namespace),
        f"reading the claim {namespace}/{name}",
    )


def pending(kube: Kube, namespace: str) -> list[Rebind]:
    """The hand-overs begun and not finished for claims of ``namespace``."""
    try:
        volumes = kube.core.list_persistent_volume().items
    except ApiException as exc:
        raise failure(exc, "listing the PersistentVolumes") from None
    found = []
    for volume in volumes:
        text = (volume.metadata.annotations or {}).get(REBIND)
        if text:
            rebind = Rebind.parse(text)
            if rebind.namespace == namespace:
                found.append(rebind)
    return found


def _patch_volume(kube: Kube, name: str, body: dict[str, Any], doing: str) -> None:
    delete_quietly(lambda: kube.core.patch_persistent_volume(name, body), doing)


def begin(kube: Kube, rebind: Rebind, figures: dict[str, Any]) -> None:
    """Step 1: both volumes kept whatever happens to their claims; the record written."""
    _patch_volume(
        kube,
        rebind.new,
        {
            "metadata": {
                "annotations": {REBIND: json.dumps(asdict(rebind)), FIGURES: json.dumps(figures)}
            },
            "spec": {"persistentVolumeReclaimPolicy": "Retain"},
        },
        f"recording the hand-over on the volume {rebind.new}",
    )


def finish(kube: Kube, rebind: Rebind, *, timeout: float) -> None:
    """Steps 2 to 6, from wherever an earlier attempt stopped."""
    claim = read_claim(kube, rebind.namespace, rebind.claim)
    bound = ((claim or {}).get("spec") or {}).get("volumeName")
    if claim is not None and bound not in (rebind.old, rebind.new):
        raise PlatformError(
            f"the claim {rebind.namespace}/{rebind.claim} is bound to the volume {bound}, neither"
            f" the one it had ({rebind.old}) nor the restored one ({rebind.new}); the restored"
            f" volume is kept ({REBIND} on it)",
            retryable=False,
        )
    if bound != rebind.new:  # the claim still on the old volume, or gone
        if bound == rebind.old:
            _patch_volume(
                kube,
                rebind.old,
                {"spec": {"persistentVolumeReclaimPolicy": "Retain"}},
                f"keeping the volume {rebind.old}",
            )
        _delete_claim(kube, rebind.home, rebind.staging, timeout)
        if bound == rebind.old:
            _delete_claim(kube, rebind.namespace, rebind.claim, timeout)
        _patch_volume(
            kube,
            rebind.new,
            {
                "spec": {
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": rebind.namespace,
                        "name": rebind.claim,
                        "uid": None,
                        "resourceVersion": None,
                    }
                }
            },
            f"pointing the volume {rebind.new} at the claim {rebind.claim}",
        )
        _create_claim(kube, rebind)
    if claim is None or bound != rebind.new or _phase(claim) != "Bound":
        _wait_bound(kube, rebind, timeout)
    _patch_volume(
        kube,
        rebind.old,
        {
            "metadata": {"annotations": {REPLACED: rebind.run}},
            "spec": {"persistentVolumeReclaimPolicy": rebind.policy},
        },
        f"giving the volume {rebind.old} its reclaim policy back",
    )
    _patch_volume(
        kube,
        rebind.new,
        {
            "metadata": {"annotations": {REBIND: None}},
            "spec": {"persistentVolumeReclaimPolicy": rebind.policy},
        },
        f"ending the hand-over on the volume {rebind.new}",
    )


def _phase(claim: dict[str, Any]) -> str | None:
    return (claim.get("status") or {}).get("phase")


def _delete_claim(kube: Kube, namespace: str, name: str, timeout: float) -> None:
    """Deletes a claim and waits until it is gone (pvc-protection holds it while a pod
    mounts it)."""
    delete_quietly(
        lambda: kube.core.delete_namespaced_persistent_volume_claim(name, namespace),
        f"deleting the claim {namespace}/{name}",
    )
    wait_for(
        lambda: True if read_claim(kube, namespace, name) is None else None,
        timeout=timeout,
        expired=lambda: (
            f"the claim {namespace}/{name} was not deleted within {timeout:g} s (a pod still"
            " mounts it?)"
        ),
    )


def _create_claim(kube: Kube, rebind: Rebind) -> None:
    shape = rebind.shape
    body = {
        "metadata": {
            "name": rebind.claim,
            "labels": shape.get("labels") or {},
            "annotations": shape.get("annotations") or {},
        },
        "spec": {**shape["spec"], "volumeName": rebind.new},
    }
    create_or_keep(
        lambda: kube.core.create_namespaced_persistent_volume_claim(rebind.namespace, body),
        f"creating the claim {rebind.namespace}/{rebind.claim} again",
    )


def _wait_bound(kube: Kube, rebind: Rebind, timeout: float) -> None:
    seen: list[str] = []

    def bound() -> bool | None:
        claim = read_claim(kube, rebind.namespace, rebind.claim) or {}
        seen[:] = [str(_phase(claim))]
        done = _phase(claim) == "Bound" and claim["spec"].get("volumeName") == rebind.new
        return True if done else None

    wait_for(
        bound,
        timeout=timeout,
        expired=lambda: (
            f"the claim {rebind.namespace}/{rebind.claim} was not bound to the restored volume"
            f" {rebind.new} within {timeout:g} s (last {seen[0] if seen else 'not seen'});"
            f" both volumes are kept, a resume finishes the hand-over"
        ),
    )

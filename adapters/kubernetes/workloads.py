"""Quiesce an application on Kubernetes by scaling its workloads to zero, and bring it back.

The replica count a workload had is written on the object itself (an annotation) BEFORE it
is scaled to zero, and only when no such annotation is there yet. So a quiesce that is
retried, or that crashed half-way, never records 0 as the count to return to; and the count
survives the worker: any later ``scale_up`` (a retry, the cleanup of a failed run, another
worker) finds it on the object. ``scale_up`` restores the count, then removes the
annotation. Both are safe to repeat. Replicas are changed through the ``scale``
subresource, the interface autoscalers and ``kubectl scale`` use.

A quiesce is over when the pods are gone, not when the counts say so: a Deployment's
``status.replicas`` stops counting a pod as soon as it is terminating, while its processes
may still write for their whole grace period; and pods no listed workload owns (a CronJob's,
an operator's) may mount the same claims.

A StatefulSet with ``podManagementPolicy: OrderedReady`` (the default) deletes its pods one
at a time, highest ordinal first, and will not delete an unhealthy pod while a lower one is
unhealthy too: two crash-looping pods stop its scale-down for good. So while such a
StatefulSet, at zero, has an unhealthy pod and none terminating, cairn does the controller's
next step itself: it deletes the highest-ordinal pod (gracefully), which at zero replicas is
not created again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, ApiException

from adapters.kubernetes.client import Kube, failure, wait_for
from adapters.kubernetes.names import MANAGED_BY
from adapters.platform import PlatformError

ANNOTATION = "backup.cairn.io/replicas-before-quiesce"
KINDS = ("deployment", "statefulset")
# Pods get their termination grace period (30 s by default) and some more.
STOP_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Workload:
    kind: str  # one of KINDS
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def scale_down(
    api: ApiClient,
    namespace: str,
    workloads: dict[str, Any],
    claims: Collection[str] = (),
    *,
    timeout: float = STOP_TIMEOUT_SECONDS,
) -> str:
    """Record each workload's replicas on it, scale it to zero, then wait until no pod that
    may write is left: the workloads' own, and any other pod mounting one of ``claims``."""
    kube = Kube(api)
    found = _select(kube, namespace, workloads, missing_ok=False)
    done = []
    for workload, obj in found:
        before = _recorded(obj)
        if before is None:
            before = obj.spec.replicas if obj.spec.replicas is not None else 1
            _patch(
                kube,
                namespace,
                workload,
                # Guarded by the version it was read at: a concurrent change is a 409, retried.
                {
                    "metadata": {
                        "resourceVersion": obj.metadata.resource_version,
                        "annotations": {ANNOTATION: str(before)},
                    }
                },
                doing=f"recording the replicas of {workload} in {namespace}",
            )
        _scale(kube, namespace, workload, 0)
        done.append(f"{workload} ({before} → 0)")
    remaining: list[str] = []
    deleted: list[str] = []

    def stopped() -> bool | None:
        for workload, _obj in found:
            if workload.kind == "statefulset":
                deleted.extend(_unblock(kube, namespace, workload))
        remaining[:] = _running_pods(kube, namespace, found, claims)
        return None if remaining else True

    wait_for(
        stopped,
        timeout=timeout,
        expired=lambda: (
            f"the application in {namespace} did not stop within {timeout:g} s: still running"
            f" {'; '.join(remaining)} (a pod that no listed workload owns must be stopped by"
            " hand, or its workload listed)"
        ),
    )
    if not done:
        return f"no workload to scale down in {namespace}"
    unblocked = (
        f"; deleted by cairn, their StatefulSet waiting for unhealthy pods: {', '.join(deleted)}"
        if deleted
        else ""
    )
    return f"scaled down in {namespace}: {', '.join(done)}{unblocked}"


def scale_up(api: ApiClient, namespace: str, workloads: dict[str, Any]) -> str:
    """Give each workload back the replicas recorded on it, then drop the record."""
    kube = Kube(api)
    done = []
    for workload, obj in _select(kube, namespace, workloads, missing_ok=True):
        before = _recorded(obj)
        if before is None:
            continue  # never quiesced, or already restored
        _scale(kube, namespace, workload, before)
        _patch(
            kube,
            namespace,
            workload,
            {"metadata": {"annotations": {ANNOTATION: None}}},
            doing=f"removing the replica record of {workload} in {namespace}",
        )
        done.append(f"{workload} (→ {before})")
    if not done:
        return f"no workload to scale up in {namespace}"
    return f"scaled up in {namespace}: {', '.join(done)}"


def parse(names: list[str]) -> list[Workload]:
    """``kind/name`` strings as registered (the API checked them; a bad one is refused)."""
    parsed = []
    for item in names:
        kind, _, name = item.partition("/")
        if kind not in KINDS or not name:
            raise PlatformError(
                f"workload {item!r} is not deployment/<name> or statefulset/<name>",
                retryable=False,
            )
        parsed.append(Workload(kind, name))
    return parsed


def _select(
    kube: Kube, namespace: str, workloads: dict[str, Any], *, missing_ok: bool
) -> list[tuple[Workload, Any]]:
    """The workloads named, or those matching the selector, each with its current object."""
    selector = workloads.get("selector")
    try:
        if selector:
            return [
                (Workload(kind, obj.metadata.name), obj)
                for kind in KINDS
                for obj in _call(kube, "list", kind)(namespace, label_selector=selector).items
            ]
        found = []
        for workload in parse(workloads.get("names") or []):
            try:
                found.append(
                    (workload, _call(kube, "read", workload.kind)(workload.name, namespace))
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                if not missing_ok:
                    raise PlatformError(
                        f"{workload} does not exist in namespace {namespace}", retryable=False
                    ) from None
        return found
    except ApiException as exc:
        raise failure(exc, f"reading the workloads of {namespace}") from None


def _call(kube: Kube, verb: str, kind: str, suffix: str = "") -> Any:
    """The AppsV1Api method for ``verb`` on ``kind`` (e.g. read_namespaced_deployment_scale)."""
    snake = "stateful_set" if kind == "statefulset" else kind
    return getattr(kube.apps, f"{verb}_namespaced_{snake}{suffix}")


def _recorded(obj: Any) -> int | None:
    value = (obj.metadata.annotations or {}).get(ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _patch(
    kube: Kube, namespace: str, workload: Workload, patch: dict[str, Any], *, doing: str
) -> None:
    try:
        _call(kube, "patch", workload.kind)(workload.name, namespace, patch)
    except ApiException as exc:
        raise failure(exc, doing) from None


def _scale(kube: Kube, namespace: str, workload: Workload, replicas: int) -> None:
    try:
        _call(kube, "patch", workload.kind, "_scale")(
            workload.name, namespace, {"spec": {"replicas": replicas}}
        )
    except ApiException as exc:
        raise failure(exc, f"scaling {workload} in {namespace} to {replicas}") from None


def _running_pods(
    kube: Kube, namespace: str, found: list[tuple[Workload, Any]], claims: Collection[str]
) -> list[str]:
    """Pods that may still write: those the workloads select, terminating ones included (a
    Deployment's ``status.replicas`` no longer counts them), and any other pod of the
    namespace that mounts one of ``claims`` (a CronJob's, an operator's), cairn's excepted."""
    selectors = [_selector(kube, namespace, workload) for workload, _ in found]
    try:
        pods = kube.core.list_namespaced_pod(namespace).items
    except ApiException as exc:
        raise failure(exc, f"listing the pods of {namespace}") from None
    running = []
    for pod in pods:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue  # its containers have ended; nothing writes any more
        labels = pod.metadata.labels or {}
        owner = next(
            (str(w) for w, s in zip(found, selectors, strict=True) if _matches(s, labels)), None
        )
        mounted = sorted(
            v.persistent_volume_claim.claim_name
            for v in pod.spec.volumes or []
            if v.persistent_volume_claim and v.persistent_volume_claim.claim_name in claims
        )
        ours = all(labels.get(k) == v for k, v in MANAGED_BY.items())
        if owner is not None:
            running.append(f"pod {pod.metadata.name} of {owner}" + _terminating(pod))
        elif mounted and not ours:
            running.append(
                f"pod {pod.metadata.name} mounting claim {', '.join(mounted)}" + _terminating(pod)
            )
    return sorted(running)


def _unblock(kube: Kube, namespace: str, workload: Workload) -> list[str]:
    """Deletes the highest-ordinal pod of an OrderedReady StatefulSet at zero replicas that
    has an unhealthy pod and none terminating (the step its controller may refuse); the
    pod's name, or nothing."""
    try:
        obj = _call(kube, "read", workload.kind)(workload.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise failure(exc, f"reading {workload} in {namespace}") from None
    if obj.spec.replicas != 0 or obj.spec.pod_management_policy == "Parallel":
        return []
    try:
        listed = kube.core.list_namespaced_pod(namespace).items
    except ApiException as exc:
        raise failure(exc, f"listing the pods of {namespace}") from None
    pods = [
        p
        for p in listed
        if any(
            r.controller and r.uid == obj.metadata.uid for r in p.metadata.owner_references or []
        )
    ]
    if not pods or any(p.metadata.deletion_timestamp for p in pods):
        return []
    if all(_running_and_ready(p) for p in pods):
        return []  # the controller goes on by itself
    last = max(pods, key=lambda p: int(p.metadata.name.rsplit("-", 1)[1]))
    try:
        kube.core.delete_namespaced_pod(last.metadata.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise failure(exc, f"deleting the pod {last.metadata.name} of {workload}") from None
    return [str(last.metadata.name)]


def _running_and_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def _selector(kube: Kube, namespace: str, workload: Workload) -> dict[str, str] | None:
    """The workload's pod selector (``matchLabels``); None when it is gone."""
    try:
        obj = _call(kube, "read", workload.kind)(workload.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise failure(exc, f"reading {workload} in {namespace}") from None
    selector = obj.spec.selector
    if selector.match_expressions:
        raise PlatformError(
            f"{workload} selects its pods with matchExpressions, which cairn does not read",
            retryable=False,
        )
    return dict(selector.match_labels or {})


def _matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def _terminating(pod: Any) -> str:
    return " (terminating)" if pod.metadata.deletion_timestamp else ""


@dataclass(frozen=True)
class PodIdentity:
    """Who an application's pods run as where they mount a claim (None: not said)."""

    workload: str
    user: int | None
    group: int | None
    fs_group: int | None
    supplemental: tuple[int, ...]


def pod_identity(
    api: ApiClient, namespace: str, workloads: dict[str, Any], claim: str
) -> PodIdentity | None:
    """The identity of the first listed workload's pods that mount ``claim`` (a volume of
    their template, or for a StatefulSet a claim of its volumeClaimTemplates,
    ``<template>-<name>-<ordinal>``): the first container mounting it, its securityContext
    over the pod's. None when no workload mounts it; the image's user is not known here."""
    for workload, obj in _select(Kube(api), namespace, workloads, missing_ok=True):
        spec = obj.spec.template.spec
        names = {
            v.name
            for v in spec.volumes or []
            if (v.persistent_volume_claim and v.persistent_volume_claim.claim_name == claim)
        }
        for template in getattr(obj.spec, "volume_claim_templates", None) or []:
            prefix = f"{template.metadata.name}-{obj.metadata.name}-"
            if claim.startswith(prefix) and claim[len(prefix) :].isdigit():
                names.add(template.metadata.name)
        if not names:
            continue
        pod = spec.security_context
        for container in spec.containers or []:
            if not any(m.name in names for m in container.volume_mounts or []):
                continue
            own = container.security_context
            return PodIdentity(
                str(workload),
                _said(own, pod, "run_as_user"),
                _said(own, pod, "run_as_group"),
                getattr(pod, "fs_group", None),
                tuple(getattr(pod, "supplemental_groups", None) or ()),
            )
    return None


def _said(container: Any, pod: Any, field: str) -> int | None:
    """A securityContext field: the container's, else the pod's."""
    value = getattr(container, field, None) if container is not None else None
    return value if value is not None else getattr(pod, field, None)

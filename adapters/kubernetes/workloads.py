"""Quiesce an application on Kubernetes by scaling its workloads to zero, and bring it back.

The replica count a workload had is written on the object itself (an annotation) BEFORE it
is scaled to zero, and only when no such annotation is there yet. So a quiesce that is
retried, or that crashed half-way, never records 0 as the count to return to; and the count
survives the worker: any later ``scale_up`` (a retry, the cleanup of a failed run, another
worker) finds it on the object. ``scale_up`` restores the count, then removes the
annotation. Both are safe to repeat. Replicas are changed through the ``scale``
subresource, the interface autoscalers and ``kubectl scale`` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, ApiException

from adapters.kubernetes.client import Kube, failure, wait_for
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
    *,
    timeout: float = STOP_TIMEOUT_SECONDS,
) -> str:
    """Record each workload's replicas on it, scale it to zero, wait until its pods are gone."""
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
    wait_for(
        lambda: None if any(_has_pods(kube, namespace, w) for w, _ in found) else True,
        timeout=timeout,
        expired=lambda: (
            f"the workloads of {namespace} still had pods {timeout:.0f} s after being scaled"
            " to zero"
        ),
    )
    if not done:
        return f"no workload to scale down in {namespace}"
    return f"scaled down in {namespace}: {', '.join(done)}"


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


def _has_pods(kube: Kube, namespace: str, workload: Workload) -> bool:
    try:
        scale = _call(kube, "read", workload.kind, "_scale")(workload.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise failure(exc, f"reading {workload} in {namespace}") from None
    return bool(scale.status.replicas)

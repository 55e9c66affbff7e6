"""Mover Jobs: ``cairn mover ...`` run inside the cluster, in cairn's own namespace only.

A mover reads or writes a claim and the application's database from inside the cluster and
the repository through the backup storage mounted in its pod. In cairn's namespace it runs
as the ``cairn-mover`` service account (deploy/kubernetes/namespace.yaml), which has no
permissions and no token mounted: it only names who the pods are, for the cluster's
admission and network rules. Its log is JSON lines
(``cli/mover.py``): progress, which is passed on as it comes, and one result at the end. The
result is also the container's termination message, in the pod's status: a log the API
server cannot fetch from the node costs the progress, not the result.

A mover is judged by its own container's end (its exit code), not by its Job's: a sidecar
that a service mesh injects into the pod runs until the pod is deleted, so such a pod never
ends and its Job never completes. Only a mover that a disruption killed is left to the Job,
whose pod failure policy starts it again.

A Job's name is given by the caller and deterministic, so a retried step (or a worker that
restarted) finds the Job its first attempt made and awaits it instead of starting another.
The repository password travels in a Secret of the Job's own name, created just before the
Job and deleted as soon as the Job has ended, whatever the outcome; the pod reads it through
``secretKeyRef``, never as a literal value in the Job's spec.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Final

from kubernetes.client import ApiException
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from adapters.kubernetes.client import (
    Kube,
    create_or_keep,
    delete_quietly,
    failure,
    wait_for,
)
from adapters.platform import PlatformError
from adapters.restic import Progress

CONTAINER: Final = "mover"
# How many of a failed mover's last log lines its error carries.
TAIL_LINES: Final = 15
# Container states that will not pass on their own: no point waiting for the timeout.
_STUCK: Final = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError"}
# A pod admission refuses for these reasons (the namespace's Pod Security level, a service
# account that does not exist) will not be admitted on a retry either.
_REFUSED_FOR_GOOD: Final = ("violates PodSecurity", "error looking up service account")
# The account movers run as in cairn's namespace (deploy/kubernetes/namespace.yaml).
MOVER_SERVICE_ACCOUNT: Final = "cairn-mover"
PROGRESS_TYPE: Final = "cairn_progress"
RESULT_TYPE: Final = "cairn_result"
RETRIED: Final = "Retried"
# Log streams: how long to connect, and how long a silent stream is trusted before it is
# opened again (a mover may be quiet for long, e.g. while pg_dump works).
CONNECT_SECONDS: Final = 10.0
STALLED_SECONDS: Final = 60.0
# How long to wait before asking again for a log the API server could not fetch.
LOG_RETRY_SECONDS: Final = 2.0
TERMINATION_LOG: Final = "/dev/termination-log"


class Refused(PlatformError):
    """The mover's pod is refused for good: by the namespace's Pod Security level, or for a
    service account that does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class Mover:
    """One ``cairn mover`` run: its arguments, pod volumes and environment.

    ``secret`` holds values (passwords) that go into the run Secret and reach the pod as
    environment variables of the same names through ``secretKeyRef``; ``env`` holds plain
    entries (including references to the application's own Secrets).
    """

    name: str
    args: list[str]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    secret: dict[str, str] = field(default_factory=dict, repr=False)
    # A node selector the pod must be scheduled by (the topology of the volume it copies).
    node_affinity: dict[str, Any] | None = None
    # Who it runs as when that is not the placement's: the identity of the application's
    # pods, for a mover that reads or writes a copy of one of their volumes.
    run_as: RunAs | None = None


@dataclass(frozen=True)
class RunAs:
    """A pod's identity: its user, group, fsGroup and supplementary groups (None: unset)."""

    user: int | None = None
    group: int | None = None
    fs_group: int | None = None
    supplemental: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where and how movers run: namespace, image, labels of the Job and of its pod."""

    namespace: str
    image: str
    labels: dict[str, str]
    pod_labels: dict[str, str]
    start_timeout: float
    run_as_user: int | None = None  # None: the image's own user
    fs_group: int | None = None
    requests: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None  # None: the namespace's default


def user_of(placement: Placement, run_as: RunAs | None = None) -> int | None:
    """The user id a mover's pod is given (None: the image's own): an application's
    identity's over the placement's."""
    if run_as is not None and run_as.user is not None:
        return run_as.user
    return placement.run_as_user


def _security(
    placement: Placement, run_as: RunAs | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext: the restricted Pod Security profile,
    except for a mover run as root, which keeps its capabilities to read and restore files of
    any owner (the baseline profile). ``run_as`` (an application's identity) wins over the
    placement's user and fsGroup."""
    user = user_of(placement, run_as)
    fs_group = placement.fs_group if run_as is None else run_as.fs_group
    pod: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    container: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if user is not None:
        pod["runAsUser"] = user
    if run_as is not None and run_as.group is not None:
        pod["runAsGroup"] = run_as.group
    if user != 0:
        pod["runAsNonRoot"] = True
        container["capabilities"] = {"drop": ["ALL"]}
    if fs_group is not None:
        # Only a volume root of another group is changed: no walk through a large volume.
        pod.update(fsGroup=fs_group, fsGroupChangePolicy="OnRootMismatch")
    if run_as is not None and run_as.supplemental:
        pod["supplementalGroups"] = list(run_as.supplemental)
    return pod, container


def job_manifest(mover: Mover, placement: Placement) -> dict[str, Any]:
    env = [
        *mover.env,
        {"name": "CAIRN_TERMINATION_LOG", "value": TERMINATION_LOG},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": mover.name, "key": key}}}
            for key in sorted(mover.secret)
        ),
    ]
    pod_security, container_security = _security(placement, mover.run_as)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # a mover never talks to the API
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [
            {
                "name": CONTAINER,
                "image": placement.image,
                "command": ["cairn", "mover", *mover.args],
                "env": env,
                "volumeMounts": mover.mounts,
                "securityContext": container_security,
                "resources": {"requests": placement.requests},
                "terminationMessagePath": TERMINATION_LOG,
                # A failure that wrote no result leaves its last log lines there.
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": mover.volumes,
    }
    if placement.service_account:
        pod["serviceAccountName"] = placement.service_account
    if mover.node_affinity:
        pod["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": mover.node_affinity}
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": mover.name, "labels": placement.labels},
        "spec": {
            "backoffLimit": 0,  # a mover that failed says why; cairn's retry policy decides
            # A pod lost to a disruption (eviction, preemption, a node drained) did not fail:
            # the Job runs the same idempotent command again, once the lost pod is gone.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "podReplacementPolicy": "Failed",
            "template": {
                "metadata": {"labels": {**placement.pod_labels, **placement.labels}},
                "spec": pod,
            },
        },
    }


def run(
    kube: Kube,
    mover: Mover,
    placement: Placement,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Runs (or finds and awaits) the mover's Job; its result line, or PlatformError."""
    namespace = placement.namespace
    try:
        if mover.secret:
            secret = {
                "metadata": {"name": mover.name, "labels": placement.labels},
                "stringData": mover.secret,
            }
            create_or_keep(
                lambda: kube.core.create_namespaced_secret(namespace, secret),
                f"creating the run Secret of mover {mover.name}",
            )
        create_or_keep(
            lambda: kube.batch.create_namespaced_job(namespace, job_manifest(mover, placement)),
            f"creating the mover Job {mover.name}",
        )
        return _await(kube, mover.name, placement, progress)
    finally:
        if mover.secret:
            delete_quietly(
                lambda: kube.core.delete_namespaced_secret(mover.name, namespace),
                f"deleting the run Secret {mover.name}",
            )


def delete_job(kube: Kube, namespace: str, name: str) -> None:
    """Deletes a Job with its pods (a Job alone would orphan them)."""
    delete_quietly(
        lambda: kube.batch.delete_namespaced_job(name, namespace, propagation_policy="Background"),
        f"deleting the mover Job {name}",
    )


def _await(
    kube: Kube,
    name: str,
    placement: Placement,
    progress: Callable[[Progress], None] | None,
) -> dict[str, Any]:
    namespace = placement.namespace
    latest: list[Progress] = []

    def tick() -> None:
        if progress is not None and latest:
            progress(latest[0])  # raises when the activity was cancelled

    followed: list[str] = []
    while True:
        pod = _started_pod(kube, name, placement, tick, followed)
        followed.append(pod)
        result: dict[str, Any] | None = None
        lines: list[str] = []
        for line in _follow(kube, namespace, pod, tick):
            message = _json(line)
            if message is not None and message.get("message_type") == PROGRESS_TYPE:
                latest[:] = [_progress(message)]
                tick()
            elif message is not None and message.get("message_type") == RESULT_TYPE:
                result = message
            else:
                lines = [*lines[-(TAIL_LINES - 1) :], line]
        job = wait_for(
            functools.partial(_finished, kube, namespace, name, pod, followed),
            timeout=placement.start_timeout,
            expired=lambda: (
                f"the mover Job {namespace}/{name} did not finish after its mover ended"
            ),
            tick=tick,
        )
        if job != RETRIED:
            break
    exit_code, final = _terminated(kube, namespace, pod)
    message = _json(final)
    if message is not None and message.get("message_type") == RESULT_TYPE:
        result = message
    if job == "Failed" or result is None:
        how = f"exited with {exit_code}" if exit_code is not None else "failed"
        tail = "\n".join(line for line in lines if line.strip()) or final.strip() or "(no output)"
        raise PlatformError(
            f"the mover Job {namespace}/{name} {how}; its last log lines:\n{tail}",
            retryable=False,
        )
    return result


def _pods(kube: Kube, namespace: str, name: str) -> list[Any]:
    try:
        found = kube.core.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
        )
    except ApiException as exc:
        raise failure(exc, f"listing the pods of mover Job {name}") from None
    return sorted(found.items, key=lambda p: p.metadata.creation_timestamp)


def _waiting(pod: Any) -> tuple[str, str] | None:
    """The container's waiting reason and message, while it has not started."""
    for status in pod.status.container_statuses or []:
        if status.state and status.state.waiting:
            return status.state.waiting.reason or "", status.state.waiting.message or ""
    return None


def _started_pod(
    kube: Kube, name: str, placement: Placement, tick: Callable[[], None], followed: list[str]
) -> str:
    """The name of the Job's newest pod, not ``followed`` yet, once its container has started
    (or already ended)."""
    namespace = placement.namespace
    seen: list[str] = []

    def started() -> str | None:
        pods = [p for p in _pods(kube, namespace, name) if p.metadata.name not in followed]
        if not pods:
            refused = _refused(kube, namespace, name)
            if refused and any(reason in refused for reason in _REFUSED_FOR_GOOD):
                raise Refused(f"the mover Job {namespace}/{name} cannot start: {refused}")
            seen[:] = [refused or "no pod yet"]
            return None
        pod = pods[-1]
        waiting = _waiting(pod)
        if pod.status.phase in ("Running", "Succeeded", "Failed") and waiting is None:
            return str(pod.metadata.name)
        reason, message = waiting or (pod.status.phase or "Pending", "")
        seen[:] = [f"pod {pod.metadata.name} is {reason}" + (f": {message}" if message else "")]
        if reason in _STUCK:
            raise PlatformError(
                f"the mover Job {namespace}/{name} cannot start: {seen[0]}", retryable=False
            )
        return None

    return wait_for(
        started,
        timeout=placement.start_timeout,
        expired=lambda: (
            f"the mover Job {namespace}/{name} did not start within"
            f" {placement.start_timeout:g} s; {seen[0] if seen else 'nothing seen'}"
        ),
        tick=tick,
    )


def _refused(kube: Kube, namespace: str, name: str) -> str | None:
    """Why the Job controller could not create the Job's pod (admission, a quota), if it
    said so in an event."""
    try:
        events = kube.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate",
        )
    except ApiException as exc:
        raise failure(exc, f"reading the events of mover Job {name}") from None
    newest = sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time or ""))
    return str(newest[-1].message) if newest else None


def _follow(kube: Kube, namespace: str, pod: str, tick: Callable[[], None]) -> Iterator[str]:
    """The container's log lines as they come, to its end (the whole log of a pod that ended).

    A stream that ends or stalls while the container still runs (a proxy's timeout, a
    kubelet restart) is opened again, past the lines already read: only a stream opened
    after the container ended is known to hold the whole log. A log the API server cannot
    fetch (5xx: the node's kubelet unreachable) is asked for again until the container has
    ended; then what was not read is lost, and the result comes from the termination message.
    """
    read = 0
    while True:
        ended = _container_ended(kube, namespace, pod)
        try:
            response = kube.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=CONTAINER,
                follow=True,
                _preload_content=False,
                _request_timeout=(CONNECT_SECONDS, STALLED_SECONDS),
            )
        except ApiException as exc:
            if exc.status == 404 or (exc.status >= 500 and ended):
                return  # the pod is gone (its Job's status says how it ended), or it ended
            if exc.status < 500:
                raise failure(exc, f"reading the log of mover pod {pod}") from None
            tick()
            time.sleep(LOG_RETRY_SECONDS)
            continue
        skip = read
        try:
            for line in _lines(response):
                if skip:
                    skip -= 1
                    continue
                read += 1
                yield line
        except (ProtocolError, ReadTimeoutError):
            pass  # cut or stalled: read on from where it stopped
        finally:
            response.release_conn()
        if ended:
            return


def _lines(response: Any) -> Iterator[str]:
    buffer = b""
    for chunk in response.stream(64 * 1024):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            yield raw.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")


def _container_ended(kube: Kube, namespace: str, pod: str) -> bool:
    """True once the mover's container has terminated (or its pod is gone)."""
    try:
        found = kube.core.read_namespaced_pod(pod, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise failure(exc, f"reading the mover pod {pod}") from None
    if found.status.phase in ("Succeeded", "Failed"):
        return True
    return any(
        status.name == CONTAINER and status.state and status.state.terminated
        for status in found.status.container_statuses or []
    )


def _json(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _progress(message: dict[str, Any]) -> Progress:
    return Progress(**{f.name: message.get(f.name, 0) for f in fields(Progress)})


def _finished(kube: Kube, namespace: str, name: str, pod: str, followed: list[str]) -> str | None:
    """``Complete`` or ``Failed`` once the mover's container in ``pod`` has ended, by its exit
    code (the pod may run on: a sidecar); when a disruption killed it, or the pod is gone, as
    the Job says: its final condition, or ``RETRIED`` once it started another pod."""
    exit_code, _message, disrupted = _mover_end(kube, namespace, pod)
    if exit_code is not None and (exit_code == 0 or not disrupted):
        return "Complete" if exit_code == 0 else "Failed"
    try:
        job = kube.batch.read_namespaced_job(name, namespace)
    except ApiException as exc:
        raise failure(exc, f"reading the mover Job {name}") from None
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    if any(p.metadata.name not in followed for p in _pods(kube, namespace, name)):
        return RETRIED
    return None


def _terminated(kube: Kube, namespace: str, pod: str) -> tuple[int | None, str]:
    """The mover container's exit code and termination message (none: the pod is gone)."""
    try:
        exit_code, message, _disrupted = _mover_end(kube, namespace, pod)
    except PlatformError:
        return None, ""  # the log read so far is all there is
    return exit_code, message


def _mover_end(kube: Kube, namespace: str, pod: str) -> tuple[int | None, str, bool]:
    """The mover container's exit code and termination message (None while it runs, or the
    pod is gone), and whether a disruption (eviction, preemption) is taking the pod."""
    try:
        found = kube.core.read_namespaced_pod(pod, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None, "", False
        raise failure(exc, f"reading the mover pod {pod}") from None
    disrupted = any(
        c.type == "DisruptionTarget" and c.status == "True" for c in found.status.conditions or []
    )
    for status in found.status.container_statuses or []:
        if status.name == CONTAINER and status.state and status.state.terminated:
            ended = status.state.terminated
            return ended.exit_code, ended.message or "", disrupted
    return None, "", disrupted

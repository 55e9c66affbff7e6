"""A kubelet that runs each pod's containers as local processes, volumes mapped to folders.

The node is this machine: a container's ``command`` + ``args`` run as a subprocess with the
host's binaries (``image`` is recorded, never pulled), its output is the pod log, its exit
code the container's. A container sees its volumes at their ``mountPath`` through one
documented convention (see docs/kubernetes-fake.md): every occurrence of a ``mountPath`` as
a path in ``command``, ``args``, ``env`` values and ``workingDir`` is rewritten to the folder
that backs the volume. Nothing is mounted, so a path the process computes at run time is not
mapped, and ``readOnly`` is not enforced. Each container runs as its pod's user and groups
(``identity``); one that mounts an NFS export marked ``root_squash`` runs with uid and gid 0
squashed to nobody as a whole (``squashed``), not only toward that export: stricter than a
cluster.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.kube.api import PODS, Api, now
from tests.fakes.kube.errors import bad_request, not_found
from tests.fakes.kube.resources import lookup

logger = logging.getLogger(__name__)
SECRETS = lookup("", "secrets")
CONFIGMAPS = lookup("", "configmaps")
PVCS = lookup("", "persistentvolumeclaims")
PVS = lookup("", "persistentvolumes")
NODE_NAME = "fake-node"
# The one node's labels, against which pods' and volumes' node affinities are judged.
NODE_LABELS = {
    "kubernetes.io/hostname": NODE_NAME,
    "kubernetes.io/os": "linux",
    "topology.kubernetes.io/zone": "fake-zone",
}
RETRY_SECONDS = 0.2
# The user an image runs as when the pod does not say: every image is taken to be cairn's
# (Dockerfile: ``USER 10001``, whose group in the image's /etc/group is 10001). A runAsUser
# the image's /etc/passwd does not know, without a runAsGroup, runs with group 0, as
# containerd does.
IMAGE_USER = 10001
IMAGE_GROUP = 10001
# The anonymous user and group an NFS export squashes root to (nfs-utils' default).
NOBODY = 65534
# The kubelet's masks for fsGroup (pkg/volume/volume_linux.go).
_RW_MASK, _RO_MASK, _EXEC_MASK = 0o660, 0o440, 0o110
_PATH_CHAR = r"A-Za-z0-9_.~/-"
IDLE_ENTRYPOINT = ["sleep", "infinity"]


class PodNotReady(Exception):
    """The pod cannot start yet (a volume or an env source is missing); the kubelet retries."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class LogBuffer:
    lines: list[tuple[str, bytes]] = field(default_factory=list)  # (RFC3339Nano, line)
    closed: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)

    def append(self, line: bytes) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.changed:
            self.lines.append((stamp, line))
            self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


@dataclass(frozen=True)
class External:
    """A volume served from off the node (an NFS export, a host path): its folder here, and
    whether the export squashes root (``root_squash``, see ``squashed``)."""

    folder: Path
    root_squash: bool = False


@dataclass
class _PodRun:
    namespace: str
    name: str
    uid: str
    scratch: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    squashing: set[str] = field(default_factory=set)  # its volumes of root_squash exports
    deleting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Kubelet:
    def __init__(
        self,
        api: Api,
        volume_folder: Callable[[dict[str, Any]], Path | None],
        external_folder: Callable[[str, dict[str, Any]], External | None],
        scratch_root: Path,
        env_base: dict[str, str],
    ) -> None:
        self.api = api
        self._volume_folder = volume_folder  # bound PVC -> its folder (None while unbound)
        self._external_folder = external_folder  # (type, volume source) -> what serves it
        self._scratch_root = scratch_root
        self._env_base = env_base
        self._runs: dict[tuple[str, str], _PodRun] = {}
        self.logs: dict[tuple[str, str, str], LogBuffer] = {}
        # what deleted pods printed, kept so tests can search every log ever written
        self.retired_logs: list[bytes] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        api.terminate_pod = self.terminate

    # --- lifecycle --------------------------------------------------------------------------

    def admit(self, pod: dict[str, Any]) -> None:
        """A new pod is bound to this node and its containers started in a thread."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if key in self._runs or self._stopping.is_set():
                return
            scratch = Path(tempfile.mkdtemp(prefix=f"{meta['name']}-", dir=self._scratch_root))
            scratch.chmod(0o755)  # its containers may run as any user
            open_for_traversal(scratch)  # and reach it, with no claim opening the way first
            run = _PodRun(meta["namespace"], meta["name"], meta["uid"], scratch)
            self._runs[key] = run
        thread = threading.Thread(
            target=self._run_pod, args=(run,), name=f"kubelet-{meta['name']}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            with run.lock:
                run.deleting = True
                procs = list(run.processes.values())
            for proc in procs:
                _signal(proc, signal.SIGKILL)
        for thread in self._threads:
            thread.join(timeout=5)

    def terminate(self, pod: dict[str, Any], grace: int) -> bool:
        """Graceful deletion: SIGTERM, SIGKILL after ``grace`` s; True while processes remain."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        with self._lock:
            run = self._runs.get(key)
        if run is None:
            self._forget(key)
            return False
        with run.lock:
            run.deleting = True
            procs = [p for p in run.processes.values() if p.poll() is None]
        if not procs:
            self._forget(key)  # a running pod thread sees ``deleting`` and writes nothing more
            return False
        for proc in procs:
            _signal(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            threading.Thread(target=self._kill_after, args=(procs, grace), daemon=True).start()
        return True

    def _kill_after(self, procs: list[subprocess.Popen[bytes]], grace: int) -> None:
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                _signal(proc, signal.SIGKILL)

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            run = self._runs.pop(key, None)
            for log_key in [k for k in self.logs if k[:2] == key]:
                buffer = self.logs.pop(log_key)
                buffer.close()
                self.retired_logs.extend(line for _, line in buffer.lines)
        if run is not None:
            shutil.rmtree(run.scratch, ignore_errors=True)

    # --- the pod ----------------------------------------------------------------------------

    def _status(self, run: _PodRun, change: Callable[[dict[str, Any]], None]) -> bool:
        """Writes pod status unless the pod is going away; False once it is."""
        with run.lock:
            if run.deleting:
                return False

        def guarded(pod: dict[str, Any]) -> None:
            if pod["metadata"]["uid"] == run.uid:
                change(pod)

        return self.api.update_status(PODS, run.namespace, run.name, guarded) is not None

    def _run_pod(self, run: _PodRun) -> None:
        try:
            self._run_pod_inner(run)
        except Exception as exc:  # a kubelet bug fails the pod loudly instead of hanging it
            logger.exception("fake kubelet failed on pod %s/%s", run.namespace, run.name)
            message = repr(exc)

            def failed(pod: dict[str, Any]) -> None:
                pod["status"].update(phase="Failed", reason="FakeKubeletError", message=message)

            self._status(run, failed)
        finally:
            with run.lock:
                deleting = run.deleting
            if deleting:
                with self.api.store.lock:
                    current = self.api.store.get(PODS, run.namespace, run.name)
                    if current is not None and current["metadata"]["uid"] == run.uid:
                        self.api.store.remove(PODS, run.namespace, run.name)
                self._forget((run.namespace, run.name))

    def _unschedulable(self, pod: dict[str, Any]) -> str | None:
        """The scheduler's refusal, if the node does not match the pod's required node
        affinity or the node affinity of a volume it mounts."""
        spec = pod["spec"]
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        if required and not node_selected(required, NODE_LABELS):
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        for volume in spec.get("volumes") or []:
            claim_ref = volume.get("persistentVolumeClaim")
            if not claim_ref:
                continue
            claim = self.api.store.get(PVCS, pod["metadata"]["namespace"], claim_ref["claimName"])
            bound = ((claim or {}).get("spec") or {}).get("volumeName")
            pv = self.api.store.get(PVS, "", bound) if bound else None
            selector = (((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required")
            if selector and not node_selected(selector, NODE_LABELS):
                return "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
        return None

    def _run_pod_inner(self, run: _PodRun) -> None:
        while True:  # the scheduler: a pod no node can take stays Pending, said in an event
            pod = self.api.store.get(PODS, run.namespace, run.name)
            if pod is None or self._stopping.is_set():
                return
            refusal = self._unschedulable(pod)
            if refusal is None:
                break
            self.api.record_event(PODS, pod, "FailedScheduling", refusal, "default-scheduler")

            def unscheduled(pod: dict[str, Any], refusal: str = refusal) -> None:
                condition = _condition("PodScheduled", "False", "Unschedulable")
                pod["status"]["conditions"] = [{**condition, "message": refusal}]

            if not self._status(run, unscheduled):
                return
            self._stopping.wait(RETRY_SECONDS)
        started = now()

        def scheduled(pod: dict[str, Any]) -> None:
            pod["spec"]["nodeName"] = NODE_NAME
            pod["status"].update(
                phase="Pending",
                hostIP="127.0.0.1",
                hostIPs=[{"ip": "127.0.0.1"}],
                startTime=started,
                conditions=[_condition("PodScheduled", "True")],
                containerStatuses=[
                    _waiting(c, "ContainerCreating") for c in pod["spec"]["containers"]
                ],
            )

        if not self._status(run, scheduled):
            return
        while True:
            pod = self.api.store.get(PODS, run.namespace, run.name)
            if pod is None or self._stopping.is_set():
                return
            with run.lock:
                if run.deleting:
                    return
            try:
                mounts = self._mounts(run, pod)
                envs = {c["name"]: self._env(pod, c) for c in _all_containers(pod)}
                for container in _all_containers(pod):
                    refusal = non_root_refusal(pod, container)
                    if refusal:
                        raise PodNotReady("CreateContainerConfigError", refusal)
                break
            except PodNotReady as exc:
                message = exc.message
                reason = "FailedMount" if exc.reason == "ContainerCreating" else "Failed"
                self.api.record_event(PODS, pod, reason, message, "kubelet")

                def waiting(
                    pod: dict[str, Any], exc: PodNotReady = exc, message: str = message
                ) -> None:
                    pod["status"]["containerStatuses"] = [
                        _waiting(c, exc.reason, message) for c in pod["spec"]["containers"]
                    ]

                if not self._status(run, waiting):
                    return
                self._stopping.wait(RETRY_SECONDS)
        for init in pod["spec"].get("initContainers") or []:
            code = self._run_container(run, pod, init, mounts, envs[init["name"]], init=True)
            if code != 0:
                self._finish(run, pod, failed=True)
                return
        self._run_main(run, pod, mounts, envs)

    def _run_main(
        self,
        run: _PodRun,
        pod: dict[str, Any],
        mounts: dict[str, Path],
        envs: dict[str, dict[str, str]],
    ) -> None:
        containers = pod["spec"]["containers"]
        results: dict[str, int] = {}
        threads = [
            threading.Thread(
                target=lambda c=c: results.__setitem__(
                    c["name"], self._run_container(run, pod, c, mounts, envs[c["name"]])
                ),
                daemon=True,
            )
            for c in containers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._finish(run, pod, failed=any(code != 0 for code in results.values()))

    def _finish(self, run: _PodRun, pod: dict[str, Any], *, failed: bool) -> None:
        def done(pod: dict[str, Any]) -> None:
            pod["status"]["phase"] = "Failed" if failed else "Succeeded"
            pod["status"]["conditions"] = [
                _condition("PodReadyToStartContainers", "False"),
                _condition("Initialized", "True", "PodCompleted"),
                _condition("Ready", "False", "PodCompleted"),
                _condition("ContainersReady", "False", "PodCompleted"),
                _condition("PodScheduled", "True"),
            ]

        self._status(run, done)

    def _run_container(
        self,
        run: _PodRun,
        pod: dict[str, Any],
        container: dict[str, Any],
        mounts: dict[str, Path],
        env: dict[str, str],
        *,
        init: bool = False,
    ) -> int:
        name = container["name"]
        restart = pod["spec"].get("restartPolicy", "Always")
        log = LogBuffer()
        with self._lock:
            self.logs[(run.namespace, run.name, name)] = log
        restarts = 0
        while True:
            code = self._exec_once(run, pod, container, mounts, env, log, restarts, init)
            with run.lock:
                deleting = run.deleting
            again = restart == "Always" or (restart == "OnFailure" and code != 0)
            if deleting or self._stopping.is_set() or not again or (init and code == 0):
                log.close()
                return code
            restarts += 1
            # CrashLoopBackOff, shortened: 0.2 s doubling up to 3.2 s instead of 10 s to 5 min.
            self._stopping.wait(min(0.2 * 2 ** (restarts - 1), 3.2))

    def _exec_once(
        self,
        run: _PodRun,
        pod: dict[str, Any],
        container: dict[str, Any],
        mounts: dict[str, Path],
        env: dict[str, str],
        log: LogBuffer,
        restarts: int,
        init: bool,
    ) -> int:
        name = container["name"]
        field = "initContainerStatuses" if init else "containerStatuses"
        # An image's own entrypoint is not simulated: it stands for a server that runs until
        # it is stopped.
        command = container.get("command") or IDLE_ENTRYPOINT
        argv = [expand(a, env) for a in command + (container.get("args") or [])]
        # The termination message file, bound at terminationMessagePath, new for each run.
        message_file = run.scratch / f"termination-{'init-' if init else ''}{name}"
        try:
            message_file.write_bytes(b"")
            message_file.chmod(0o666)  # bound into the container, writable by its user
        except FileNotFoundError:  # the pod was deleted and forgotten meanwhile: not started
            return 137
        message_path = container.get("terminationMessagePath", "/dev/termination-log")
        paths = MountMap(container, mounts, {message_path: message_file})
        argv = [paths.inward(a) for a in argv]
        proc_env = {**self._env_base, "HOME": str(run.scratch / "home"), "HOSTNAME": run.name}
        proc_env.update({k: paths.inward(v) for k, v in env.items()})
        workdir = container.get("workingDir")
        cwd = Path(paths.inward(workdir)) if workdir else run.scratch / "root"
        for own in (run.scratch / "home", run.scratch / "root"):
            own.mkdir(exist_ok=True)
            own.chmod(0o1777)  # like /tmp: whichever user the container runs as may write
        cwd.mkdir(parents=True, exist_ok=True)
        user = identity(pod, container)
        if any(m["name"] in run.squashing for m in container.get("volumeMounts") or []):
            user = squashed(user)
        started = now()
        failure: OSError | None = None
        with run.lock:
            if run.deleting:
                return 137
            try:
                proc = subprocess.Popen(
                    argv,
                    env=proc_env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    user=user.uid,
                    group=user.gid,
                    extra_groups=list(user.groups),
                )
            except OSError as exc:
                failure = exc
            else:
                run.processes[name] = proc
        if failure is not None:
            # As with containerd: the reason is in the container's status, the log is empty.
            message = (
                "failed to create containerd task: failed to create shim task: OCI runtime"
                " create failed: unable to start container process: exec:"
                f" {argv[0] if argv else ''!r}: {failure.strerror or failure}: unknown"
            )
            state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": started,
                    "finishedAt": now(),
                }
            }
            self._container_state(run, field, container, state, restarts)
            return 128
        self._container_state(
            run, field, container, {"running": {"startedAt": started}}, restarts, running=True
        )
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            log.append(paths.outward(line))
        code = proc.wait()
        if code < 0:
            code = 128 - code  # killed by a signal, as the container runtime reports it
        reason = "Completed" if code == 0 else "Error"
        state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": now(),
                "containerID": f"fake://{proc.pid}",
            }
        }
        message = _termination_message(container, message_file, log, code)
        if message:
            state["terminated"]["message"] = message
        self._container_state(run, field, container, state, restarts)
        return code

    def _container_state(
        self,
        run: _PodRun,
        field: str,
        container: dict[str, Any],
        state: dict[str, Any],
        restarts: int,
        *,
        running: bool = False,
    ) -> None:
        entry = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": running,
            "started": running,
            "restartCount": restarts,
            "state": state,
            "lastState": {},
        }
        if "containerID" in state.get("terminated", {}):
            entry["containerID"] = state["terminated"]["containerID"]

        def change(pod: dict[str, Any]) -> None:
            status = pod["status"]
            entries = [e for e in status.get(field, []) if e["name"] != container["name"]]
            status[field] = sorted([*entries, entry], key=lambda e: str(e["name"]))
            if field == "containerStatuses" and status["phase"] == "Running":
                # No probes: a pod is ready while all its containers run (not crash-looping).
                ready = len(status[field]) == len(pod["spec"]["containers"]) and all(
                    e["ready"] for e in status[field]
                )
                status["conditions"] = [
                    _condition(c["type"], "True" if ready else "False")
                    if c["type"] in ("Ready", "ContainersReady")
                    else c
                    for c in status.get("conditions") or []
                ]
            if running and field == "containerStatuses" and status["phase"] == "Pending":
                status["phase"] = "Running"
                status["podIP"] = "127.0.0.1"
                status["podIPs"] = [{"ip": "127.0.0.1"}]
                status["conditions"] = [
                    _condition(t, "True")
                    for t in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                        "PodScheduled",
                    )
                ]

        self._status(run, change)

    # --- volumes and environment ------------------------------------------------------------

    def _mounts(self, run: _PodRun, pod: dict[str, Any]) -> dict[str, Path]:
        """Volume name -> the folder that backs it (PodNotReady while one cannot be had)."""
        namespace = run.namespace
        folders: dict[str, Path] = {}
        owned: dict[str, bool] = {}  # volumes whose ownership the kubelet manages: read-only?
        for volume in pod["spec"].get("volumes") or []:
            vname = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                pvc = self.api.store.get(PVCS, namespace, claim)
                if pvc is None:
                    raise PodNotReady(
                        "ContainerCreating", f'persistentvolumeclaim "{claim}" not found'
                    )
                if pvc["metadata"].get("deletionTimestamp"):
                    raise PodNotReady(
                        "ContainerCreating", f'persistentvolumeclaim "{claim}" is being deleted'
                    )
                folder = self._volume_folder(pvc)
                if folder is None:
                    raise PodNotReady(
                        "ContainerCreating",
                        f'pod has unbound immediate PersistentVolumeClaims: "{claim}"',
                    )
                folders[vname] = folder
                # The CSI driver's fsGroupPolicy is taken as ``File``; the kubelet leaves a
                # read-only CSI volume's ownership alone (csi_mounter.go supportsFSGroup).
                if not volume["persistentVolumeClaim"].get("readOnly"):
                    owned[vname] = False
            elif "secret" in volume or "configMap" in volume:
                folders[vname] = self._projected(run, volume)
                owned[vname] = True  # read-only volumes
            elif "emptyDir" in volume:
                folders[vname] = run.scratch / "volumes" / vname
                if not folders[vname].exists():
                    folders[vname].mkdir(parents=True)
                    folders[vname].chmod(0o777)  # as the kubelet makes it
                owned[vname] = False
            elif "cephfs" in volume:  # the in-tree plugin is gone since 1.31
                raise PodNotReady(
                    "ContainerCreating",
                    f"Unable to attach or mount volumes: unmounted volumes=[{vname}],"
                    f" unattached volumes=[], failed to process volumes=[{vname}]: failed to get"
                    f' Plugin from volumeSpec for volume "{vname}" err=no volume plugin matched',
                )
            else:
                kind = next((k for k in ("nfs", "hostPath") if k in volume), None)
                mapped = self._external_folder(kind, volume[kind]) if kind else None
                if mapped is None:
                    raise PodNotReady(
                        "ContainerCreating",
                        f'MountVolume.SetUp failed for volume "{vname}": the fake kubelet has no'
                        f" folder mapped for {kind or 'this volume type'} {volume.get(kind, '')}",
                    )
                folders[vname] = mapped.folder  # nfs and hostPath: no ownership management
                if mapped.root_squash:
                    run.squashing.add(vname)
        context = pod["spec"].get("securityContext") or {}
        for vname, folder in folders.items():
            open_for_traversal(folder)
            if context.get("fsGroup") is not None and vname in owned:
                apply_fs_group(
                    folder,
                    int(context["fsGroup"]),
                    read_only=owned[vname],
                    policy=context.get("fsGroupChangePolicy"),
                )
        return folders

    def _projected(self, run: _PodRun, volume: dict[str, Any]) -> Path:
        is_secret = "secret" in volume
        source = volume["secret" if is_secret else "configMap"]
        name = source.get("secretName" if is_secret else "name")
        obj = self.api.store.get(SECRETS if is_secret else CONFIGMAPS, run.namespace, name)
        if obj is None:
            if source.get("optional"):
                obj = {}
            else:
                kind = "secret" if is_secret else "configmap"
                raise PodNotReady(
                    "ContainerCreating",
                    f'MountVolume.SetUp failed for volume "{volume["name"]}" : {kind} "{name}"'
                    " not found",
                )
        data: dict[str, bytes] = {}
        if is_secret:
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        folder: Path = run.scratch / "volumes" / str(volume["name"])
        folder.mkdir(parents=True, exist_ok=True)
        folder.parent.chmod(0o755)
        for item in items:
            if item["key"] not in data:
                raise PodNotReady("ContainerCreating", f"couldn't find key {item['key']} in {name}")
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            target.chmod(int(item.get("mode", source.get("defaultMode", 0o644))))
        return folder

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, value in self._source_data(namespace, source).items():
                env[prefix + key] = value
        for var in container.get("env") or []:
            if "valueFrom" not in var:
                env[var["name"]] = expand(str(var.get("value", "")), env)
                continue
            ref = var["valueFrom"]
            if "fieldRef" in ref:
                env[var["name"]] = _field_ref(pod, ref["fieldRef"]["fieldPath"])
                continue
            key_ref = ref.get("secretKeyRef") or ref.get("configMapKeyRef") or {}
            is_secret = "secretKeyRef" in ref
            data = self._source_data(
                namespace, {("secretRef" if is_secret else "configMapRef"): key_ref}
            )
            if key_ref.get("key") in data:
                env[var["name"]] = data[key_ref["key"]]
            elif not key_ref.get("optional"):
                kind = "secret" if is_secret else "configmap"
                raise PodNotReady(
                    "CreateContainerConfigError",
                    f"couldn't find key {key_ref.get('key')} in {kind}"
                    f" {namespace}/{key_ref.get('name')}",
                )
        return env

    def _source_data(self, namespace: str, source: dict[str, Any]) -> dict[str, str]:
        if "secretRef" in source:
            ref = source["secretRef"]
            obj = self.api.store.get(SECRETS, namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    return {}
                raise PodNotReady(
                    "CreateContainerConfigError", f'secret "{ref.get("name")}" not found'
                )
            return {
                k: base64.b64decode(v).decode("utf-8", "surrogateescape")
                for k, v in (obj.get("data") or {}).items()
            }
        ref = source.get("configMapRef") or {}
        obj = self.api.store.get(CONFIGMAPS, namespace, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                return {}
            raise PodNotReady(
                "CreateContainerConfigError", f'configmap "{ref.get("name")}" not found'
            )
        return {k: str(v) for k, v in (obj.get("data") or {}).items()}

    # --- pods/log ---------------------------------------------------------------------------

    def every_log_line(self) -> list[bytes]:
        """Every line any container printed, of running and of deleted pods."""
        with self._lock:
            live = [line for buffer in self.logs.values() for _, line in buffer.lines]
            return [*self.retired_logs, *live]

    def log(self, namespace: str, name: str, params: dict[str, str]) -> tuple[LogBuffer, str]:
        pod = self.api.store.get(PODS, namespace, name)
        if pod is None:
            raise not_found("", "pods", name)
        names = [c["name"] for c in _all_containers(pod)]
        container = params.get("container")
        if not container:
            if len(pod["spec"]["containers"]) != 1:
                choices = " ".join(c["name"] for c in pod["spec"]["containers"])
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{choices}]"
                )
            container = pod["spec"]["containers"][0]["name"]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        buffer = self.logs.get((namespace, name, container))
        if buffer is None:
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        return buffer, container


def _termination_message(
    container: dict[str, Any], message_file: Path, log: LogBuffer, code: int
) -> str:
    """What the kubelet reports: the file's last 4096 bytes; with FallbackToLogsOnError and
    a failure, an empty file gives the log's last 80 lines (at most 2048 bytes)."""
    try:
        with message_file.open("rb") as file:
            file.seek(max(0, message_file.stat().st_size - 4096))
            message = file.read()
    except FileNotFoundError:
        return ""  # the pod was deleted: its folder went with it
    fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    if not message and code != 0 and fallback:
        with log.changed:
            lines = [line for _stamp, line in log.lines[-80:]]
        message = b"".join(lines)[-2048:]
    return message.decode(errors="replace")


def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]


def _condition(kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": now(),
    }
    if reason:
        cond["reason"] = reason
    return cond


def _waiting(container: dict[str, Any], reason: str, message: str | None = None) -> dict[str, Any]:
    waiting: dict[str, Any] = {"reason": reason}
    if message:
        waiting["message"] = message
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": waiting},
        "lastState": {},
    }


def _field_ref(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": NODE_NAME,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    label = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if label:
        return str((meta.get(label.group(1)) or {}).get(label.group(2), ""))
    return str(values.get(path, ""))


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables replaced, ``$$`` escapes a ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


class MountMap:
    """The mount convention for one container.

    Inward, each ``mountPath`` standing as a path in the command, args, env values and
    working dir becomes the folder that backs it; outward, the folders in the container's
    output become the mount paths again, so its log reads as it would in a real pod.
    """

    def __init__(
        self, container: dict[str, Any], mounts: dict[str, Path], files: dict[str, Path]
    ) -> None:
        self.targets: dict[str, str] = {path: str(file) for path, file in files.items()}
        for mount in container.get("volumeMounts") or []:
            folder = mounts[mount["name"]]
            if mount.get("subPath"):
                folder = folder / mount["subPath"]
                folder.mkdir(parents=True, exist_ok=True)
            self.targets[str(mount["mountPath"]).rstrip("/") or "/"] = str(folder)
        paths = sorted(self.targets, key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in paths)
        self._inward = re.compile(rf"(?<![{_PATH_CHAR}])({alternatives})(?=$|/|[^{_PATH_CHAR}])")
        self._back = {folder.encode(): path.encode() for path, folder in self.targets.items()}
        folders = sorted(self._back, key=len, reverse=True)
        self._outward = re.compile(b"|".join(re.escape(f) for f in folders))

    def inward(self, text: str) -> str:
        if not self.targets:
            return text
        return self._inward.sub(lambda m: self.targets[m.group(1)], text)

    def outward(self, line: bytes) -> bytes:
        if not self.targets:
            return line
        return self._outward.sub(lambda m: self._back[m.group(0)], line)


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def node_selected(selector: dict[str, Any], labels: dict[str, str], name: str = NODE_NAME) -> bool:
    """Whether the node ``name`` of ``labels`` matches a NodeSelector: any of its (non-empty)
    terms, each term all of its expressions (In, NotIn, Exists, DoesNotExist, Gt, Lt) and
    fields (``metadata.name``)."""
    fields = {"metadata.name": name}

    def matches(expression: dict[str, Any], against: dict[str, str]) -> bool:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        value = against.get(key)
        if operator == "In":
            return value in values
        if operator == "NotIn":
            return value not in values
        if operator == "Exists":
            return value is not None
        if operator == "DoesNotExist":
            return value is None
        if operator in ("Gt", "Lt") and value is not None and value.isdigit():
            return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
        return False

    return any(
        bool(term.get("matchExpressions") or term.get("matchFields"))
        and all(matches(e, labels) for e in term.get("matchExpressions") or [])
        and all(matches(e, fields) for e in term.get("matchFields") or [])
        for term in selector.get("nodeSelectorTerms") or []
    )


# --- identity: who a container's process is, and the volumes' ownership ------------------------


@dataclass(frozen=True)
class Identity:
    """The user, group and supplementary groups a container's process runs with."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def identity(pod: dict[str, Any], container: dict[str, Any]) -> Identity:
    """The container's effective securityContext (the container's over the pod's):
    runAsUser (default: the image's, IMAGE_USER), runAsGroup (default: the image's group
    for the image's user or root, else 0, as containerd does for a uid the image's
    /etc/passwd lacks), supplementalGroups and fsGroup as supplementary groups."""
    pod_context = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    uid = own.get("runAsUser", pod_context.get("runAsUser"))
    gid = own.get("runAsGroup", pod_context.get("runAsGroup"))
    if uid is None:
        uid = IMAGE_USER
    if gid is None:
        gid = IMAGE_GROUP if uid == IMAGE_USER else 0
    groups = set(pod_context.get("supplementalGroups") or [])
    if pod_context.get("fsGroup") is not None:
        groups.add(pod_context["fsGroup"])
    return Identity(int(uid), int(gid), tuple(sorted(int(g) for g in groups)))


def squashed(user: Identity) -> Identity:
    """What an NFS export with ``root_squash`` makes of a process: the server maps uid 0 and
    gid 0 (also among the supplementary groups) to its anonymous user and group, nobody
    (nfs-utils' default anonuid/anongid 65534); other ids pass as they are.

    A server squashes only the requests made to that export, while the container's root
    stays root toward its other volumes. One local process cannot be two users, so the fake
    runs a container that mounts such an export entirely as the squashed identity: stricter
    than a cluster (root is nobody toward its other volumes too), never more lenient."""

    def squash(number: int) -> int:
        return NOBODY if number == 0 else number

    return Identity(
        squash(user.uid), squash(user.gid), tuple(sorted({squash(g) for g in user.groups}))
    )


def non_root_refusal(pod: dict[str, Any], container: dict[str, Any]) -> str | None:
    """The kubelet's refusal of a container that must not run as root but would."""
    pod_context = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    if not own.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
        return None
    if identity(pod, container).uid != 0:
        return None
    meta = pod["metadata"]
    return (
        f"container's runAsUser breaks non-root policy (pod: \"{meta['name']}_"
        f'{meta["namespace"]}({meta["uid"]})", container: {container["name"]})'
    )


def _needs_ownership_change(root: Path, fs_group: int, read_only: bool) -> bool:
    """``fsGroupChangePolicy: OnRootMismatch``: only when the volume's root is not already
    of that group, group-accessible and setgid (requiresPermissionChange)."""
    info = root.stat()
    if info.st_gid != fs_group or not stat.S_ISDIR(info.st_mode):
        return True
    wanted = (_RO_MASK if read_only else _RW_MASK) | _EXEC_MASK
    return (info.st_mode & wanted) != wanted or not info.st_mode & stat.S_ISGID


def apply_fs_group(root: Path, fs_group: int, *, read_only: bool, policy: str | None) -> None:
    """What the kubelet does to a volume that supports ownership management (claims,
    emptyDir, Secrets, ConfigMaps) when the pod has an fsGroup: every file and folder
    group-owned by it, group-readable (and writable unless the volume is read-only),
    folders also group-searchable and setgid. Symbolic links are left alone."""
    if policy == "OnRootMismatch" and not _needs_ownership_change(root, fs_group, read_only):
        return
    mask = _RO_MASK if read_only else _RW_MASK
    for folder, subfolders, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue
            os.lchown(path, -1, fs_group)
            extra = mask | (_EXEC_MASK | stat.S_ISGID if stat.S_ISDIR(info.st_mode) else 0)
            os.chmod(path, stat.S_IMODE(info.st_mode) | extra)
        subfolders[:] = [d for d in subfolders if not os.path.islink(os.path.join(folder, d))]


def open_for_traversal(folder: Path) -> None:
    """Nothing is mounted: a process reaches a volume through the folders above the one that
    backs it, which a node's mount point would not ask of it. So each of them gets the
    search bit for others (o+x: traversal, not listing)."""
    for parent in folder.resolve().parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:  # a hostPath the node does not have: nothing to reach
            continue
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def require_root() -> None:
    """The kubelet runs each container as its pod's user: it must be root, and the programs
    the containers run (this interpreter, for ``cairn mover``) must be reachable by others.
    Refuses loudly rather than run containers as the wrong user."""
    if os.geteuid() != 0:
        raise RuntimeError(
            "the fake Kubernetes API runs each container as its pod's user (runAsUser,"
            " runAsGroup, fsGroup): it must run as root, and runs as uid"
            f" {os.geteuid()}; run the Kubernetes tests as root"
        )
    interpreter = Path(sys.executable).resolve()
    closed = [p for p in interpreter.parents if not p.stat().st_mode & stat.S_IXOTH]
    if closed or not interpreter.stat().st_mode & stat.S_IXOTH:
        raise RuntimeError(
            f"the fake Kubernetes API runs containers as other users (the image's is"
            f" {IMAGE_USER}), who cannot run this interpreter ({interpreter}):"
            f" {', '.join(str(p) for p in closed) or interpreter} not searchable by others;"
            f" allow it (chmod o+x {' '.join(str(p) for p in closed) or interpreter})"
        )

"""The controllers of the fake cluster, fed by the store's events like informers.

* job controller: pods from the template, status counts and conditions (Complete / Failed
  with ``BackoffLimitExceeded`` or ``DeadlineExceeded``), ``ttlSecondsAfterFinished``;
* workloads: a Deployment/StatefulSet runs ``spec.replicas`` pods, deleted gracefully when
  scaled down (terminating pods keep running until their processes end);
* CSI provisioner + PV binder: a PVC is bound at once to a folder ``volumes/pvc-<uid>``; with a
  ``dataSource`` (VolumeSnapshot or PVC) it starts as a copy of it, Pending until the
  snapshot is ready;
* snapshot controller + CSI snapshotter: a VolumeSnapshot of a class whose ``driver`` is the
  fake's becomes a copy of the PVC's folder, a VolumeSnapshotContent and ``readyToUse``;
  a class of another driver is never served (its snapshots never become ready, as in a
  cluster without that driver's sidecar);
* PVC protection, namespace lifecycle.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.kube.api import PODS, PVC_PROTECTION, Api, now
from tests.fakes.kube.errors import ApiError
from tests.fakes.kube.kubelet import PVCS, Kubelet
from tests.fakes.kube.resources import ALL_RESOURCES, lookup
from tests.fakes.kube.store import WatchEvent

logger = logging.getLogger(__name__)

JOBS = lookup("batch", "jobs")
NAMESPACES = lookup("", "namespaces")
SNAPSHOTS = lookup("snapshot.storage.k8s.io", "volumesnapshots")
CONTENTS = lookup("snapshot.storage.k8s.io", "volumesnapshotcontents")
CLASSES = lookup("snapshot.storage.k8s.io", "volumesnapshotclasses")
ACCOUNTS = lookup("", "serviceaccounts")
SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME = "kubernetes.io/hostname"
PVS = lookup("", "persistentvolumes")
STORAGE_CLASSES = lookup("storage.k8s.io", "storageclasses")
WORKLOAD_KINDS = {
    "Deployment": lookup("apps", "deployments"),
    "StatefulSet": lookup("apps", "statefulsets"),
}
WORKLOADS = {resource.key for resource in WORKLOAD_KINDS.values()}
DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
NEVER_READY = "fake.cairn.dev/never-ready"  # a VolumeSnapshotClass parameter (a test knob)
_UNITS = {
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "": 1,
}


def parse_quantity(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|)", str(text).strip())
    if not match:
        raise ValueError(f"quantities must match the regular expression: {text}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(
        r.get("uid") == uid and r.get("controller")
        for r in obj["metadata"].get("ownerReferences") or []
    )


class Controllers:
    def __init__(self, api: Api, kubelet: Kubelet, root: Path, driver: str) -> None:
        self.api = api
        self.kubelet = kubelet
        self.root = root
        self.driver = driver
        self._cursor = api.store.revision
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counted: dict[str, dict[str, set[str]]] = {}  # job uid -> succeeded/failed pod uids
        self._phases: dict[str, str] = {}  # pod uid -> last phase seen
        self._refused: set[str] = set()  # uids of Jobs whose last pod admission refused
        # snapshot handle -> the driver that took it and the size it reports
        self._snapshots_taken: dict[str, tuple[str, int]] = {}
        self.idle = threading.Condition()

    # --- loop -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="fake-kube-controllers", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.api.store.lock:
            self.api.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Until every event so far was handled (tests use it before ``compact``)."""
        deadline = time.monotonic() + timeout
        with self.idle:
            while self._cursor < self.api.store.revision and time.monotonic() < deadline:
                self.idle.wait(0.05)

    def _loop(self) -> None:
        last_tick = 0.0
        while not self._stop.is_set():
            store = self.api.store
            with store.lock:
                events = store.events_after(self._cursor)
                if not events:
                    store.changed.wait(0.2)
            for event in events:
                try:
                    self._handle(event)
                except Exception:  # a controller bug must not stop the cluster
                    logger.exception("fake kube controller failed on %s", event.type)
                self._cursor = event.revision
            with self.idle:
                self.idle.notify_all()
            if time.monotonic() - last_tick > 0.2:
                last_tick = time.monotonic()
                try:
                    self._tick()
                except Exception:
                    logger.exception("fake kube controller tick failed")

    def _handle(self, event: WatchEvent) -> None:
        obj, key = event.object, event.resource.key
        meta = obj["metadata"]
        if key == PODS.key:
            self._pod_event(event)
        elif key == JOBS.key and event.type != "DELETED":
            self._reconcile_job(meta["namespace"], meta["name"])
        elif key == PVCS.key:
            if event.type == "ADDED":
                self._provision(obj)
            elif event.type == "DELETED":
                self._release_volume(obj)
            else:
                self._protect_claims(meta["namespace"])
        elif key == SNAPSHOTS.key:
            if event.type == "DELETED":
                self._snapshot_deleted(obj)
            elif not (obj.get("status") or {}).get("boundVolumeSnapshotContentName"):
                self._take_snapshot(obj)
            self._retry_pending_claims()
        elif key == PVS.key and event.type == "ADDED" and not obj["spec"].get("claimRef"):
            self._set_volume_phase(meta["name"], "Available")
        elif key == PVS.key and event.type == "MODIFIED":
            self._reclaim(obj)
            self._reopen(obj)
        elif key == CONTENTS.key and event.type == "DELETED":
            # The storage's snapshot goes with a Delete content only; a Retain content's
            # stays, and other contents pointing at the same handle keep it.
            if obj["spec"].get("deletionPolicy") == "Delete":
                shutil.rmtree(self.snapshot_folder(obj), ignore_errors=True)
        elif key in WORKLOADS and event.type != "DELETED":
            self._reconcile_workload(event.resource, meta["namespace"], meta["name"])
        elif key == NAMESPACES.key and meta.get("deletionTimestamp"):
            self._purge_namespace(meta["name"])
        elif (
            key == NAMESPACES.key
            and event.type == "ADDED"
            and self.api.store.get(ACCOUNTS, meta["name"], "default") is None
        ):
            # The service account controller: every namespace has a "default" account.
            account = {"metadata": {"name": "default", "namespace": meta["name"]}}
            self.api.create_internal(ACCOUNTS, account)

    def _tick(self) -> None:
        for job in self.api.store.list(JOBS, None):
            spec, status = job["spec"], job.get("status") or {}
            timed = (
                spec.get("activeDeadlineSeconds") or spec.get("ttlSecondsAfterFinished") is not None
            )
            if (timed and status.get("startTime")) or job["metadata"]["uid"] in self._refused:
                self._reconcile_job(job["metadata"]["namespace"], job["metadata"]["name"])
        self._retry_pending_claims()
        for snapshot in self.api.store.list(SNAPSHOTS, None):
            if not (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName"):
                self._take_snapshot(snapshot)
        for ns in self.api.store.list(NAMESPACES, None):
            if ns["metadata"].get("deletionTimestamp"):
                self._purge_namespace(ns["metadata"]["name"])
        for ns in {p["metadata"]["namespace"] for p in self.api.store.list(PVCS, None)}:
            self._protect_claims(ns)

    # --- pods and jobs ----------------------------------------------------------------------

    def _pod_event(self, event: WatchEvent) -> None:
        pod = event.object
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase", "")
        if event.type == "ADDED":
            self.kubelet.admit(pod)
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        if event.type == "DELETED":
            last = self._phases.pop(uid, phase)
            if owner and owner.get("kind") == "Job" and last not in ("Succeeded", "Failed"):
                self._job_failure(owner["uid"], pod)
            self._protect_claims(meta["namespace"])
        else:
            self._phases[uid] = phase
            if phase in ("Succeeded", "Failed"):
                self._protect_claims(meta["namespace"])
        if owner and owner.get("kind") == "Job":
            self._reconcile_job(meta["namespace"], owner["name"])
        elif owner and owner.get("kind") in WORKLOAD_KINDS:
            self._reconcile_workload(
                WORKLOAD_KINDS[owner["kind"]], meta["namespace"], owner["name"]
            )

    def evict(self, namespace: str, name: str) -> None:
        with self.api.store.lock:
            pod = self.api.store.get(PODS, namespace, name)
            if pod is None:
                raise LookupError(f"pod {namespace}/{name} does not exist")
            condition = _condition(
                "DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting"
            )
            del condition["lastProbeTime"]
            status = pod.setdefault("status", {})
            status["conditions"] = [*(status.get("conditions") or []), condition]
            pod = self.api.store.replace(PODS, pod)
            self._stop_pod(pod)

    def _job_failure(self, job_uid: str, pod: dict[str, Any]) -> None:
        """Counts a failed pod as the Job's pod failure policy says: ``failed`` (towards the
        backoff limit), ``ignored`` (replaced, not counted) or ``fatal`` (fails the Job)."""
        counted = self._counted.setdefault(job_uid, _no_pods())
        uid = pod["metadata"]["uid"]
        if any(uid in found for found in counted.values()):
            return
        job = next(
            (
                j
                for j in self.api.store.list(JOBS, pod["metadata"]["namespace"])
                if j["metadata"]["uid"] == job_uid
            ),
            None,
        )
        action = _policy_action(((job or {}).get("spec") or {}).get("podFailurePolicy"), pod)
        counted[{"Ignore": "ignored", "FailJob": "fatal"}.get(action, "failed")].add(uid)

    def _reconcile_job(self, namespace: str, name: str) -> None:
        job = self.api.store.get(JOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        uid = job["metadata"]["uid"]
        spec, status = job["spec"], job.get("status") or {}
        pods = [p for p in self.api.store.list(PODS, namespace) if _owned_by(p, uid)]
        counted = self._counted.setdefault(uid, _no_pods())
        for pod in pods:
            phase = pod["status"].get("phase")
            if phase == "Succeeded":
                counted["succeeded"].add(pod["metadata"]["uid"])
            elif phase == "Failed":
                self._job_failure(uid, pod)
        # Policy "Failed": a terminating pod is still there, so it is not replaced yet.
        wait_for_gone = spec.get("podReplacementPolicy") == "Failed"
        active = [
            p
            for p in pods
            if p["status"].get("phase") not in ("Succeeded", "Failed")
            and (wait_for_gone or not p["metadata"].get("deletionTimestamp"))
        ]
        finished = any(
            c["type"] in ("Complete", "Failed") and c["status"] == "True"
            for c in status.get("conditions") or []
        )
        if finished:
            self._finished_job(job, active)
            return
        restarts = sum(
            cs.get("restartCount", 0)
            for p in pods
            for cs in p["status"].get("containerStatuses") or []
        )
        failures = len(counted["failed"]) + restarts
        started = status.get("startTime") or now()
        conditions: list[dict[str, Any]] = []
        completion_time = None
        if len(counted["succeeded"]) >= int(spec.get("completions") or 1):
            conditions = [
                _condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ),
                _condition(
                    "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
                ),
            ]
            completion_time = now()
        elif counted["fatal"]:
            message = "Pod matched a FailJob rule of the pod failure policy"
            conditions = [
                _condition("FailureTarget", "PodFailurePolicy", message),
                _condition("Failed", "PodFailurePolicy", message),
            ]
        elif failures > int(spec.get("backoffLimit", 6)):
            message = "Job has reached the specified backoff limit"
            conditions = [
                _condition("FailureTarget", "BackoffLimitExceeded", message),
                _condition("Failed", "BackoffLimitExceeded", message),
            ]
        elif spec.get("activeDeadlineSeconds") and _age(started) > int(
            spec["activeDeadlineSeconds"]
        ):
            message = "Job was active longer than specified deadline"
            conditions = [
                _condition("FailureTarget", "DeadlineExceeded", message),
                _condition("Failed", "DeadlineExceeded", message),
            ]
        elif not spec.get("suspend"):
            wanted = min(
                int(spec.get("parallelism") or 1),
                int(spec.get("completions") or 1) - len(counted["succeeded"]),
            )
            for _ in range(max(0, wanted - len(active))):
                try:
                    active.append(self._create_job_pod(job))
                except ApiError as exc:  # admission refused it: said on the Job, tried again
                    self.api.record_event(
                        JOBS,
                        job,
                        "FailedCreate",
                        f"Error creating: {exc.message}",
                        "job-controller",
                    )
                    self._refused.add(uid)
                    break
                self._refused.discard(uid)
        if conditions:
            for pod in active:  # terminated by the controller: they count as failed
                counted["failed"].add(pod["metadata"]["uid"])
                self.api.delete_pod(pod, int(pod["spec"].get("terminationGracePeriodSeconds", 30)))
            active = []
        ready = sum(1 for p in active if p["status"].get("phase") == "Running")

        def write(obj: dict[str, Any]) -> None:
            new: dict[str, Any] = {"startTime": started}
            if active:
                new["active"] = len(active)
            if counted["succeeded"]:
                new["succeeded"] = len(counted["succeeded"])
            if counted["failed"] or counted["fatal"]:
                new["failed"] = len(counted["failed"]) + len(counted["fatal"])
            new.update(ready=ready, terminating=0, uncountedTerminatedPods={})
            if conditions:
                new["conditions"] = conditions
            if completion_time:
                new["completionTime"] = completion_time
            obj["status"] = new

        self.api.update_status(JOBS, namespace, name, write)

    def _finished_job(self, job: dict[str, Any], active: list[dict[str, Any]]) -> None:
        for pod in active:
            self.api.delete_pod(pod, int(pod["spec"].get("terminationGracePeriodSeconds", 30)))
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        status = job.get("status") or {}
        finished_at = status.get("completionTime") or next(
            (
                c["lastTransitionTime"]
                for c in status.get("conditions") or []
                if c["type"] == "Failed"
            ),
            None,
        )
        if ttl is not None and finished_at and _age(finished_at) >= int(ttl):
            with self.api.store.lock:
                current = self.api.store.get(
                    JOBS, job["metadata"]["namespace"], job["metadata"]["name"]
                )
                if current is not None and current["metadata"]["uid"] == job["metadata"]["uid"]:
                    self.api.delete_with_dependents(JOBS, current, "Background")

    def _create_job_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        template = job["spec"]["template"]
        pod_meta = dict(template.get("metadata") or {})
        pod_meta.update(
            generateName=f"{meta['name']}-",
            namespace=meta["namespace"],
            ownerReferences=[
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        )
        return self.api.create_internal(PODS, {"metadata": pod_meta, "spec": template["spec"]})

    # --- deployments and statefulsets -------------------------------------------------------

    def _reconcile_workload(self, resource: Any, namespace: str, name: str) -> None:
        """Pods up or down to ``spec.replicas``, then the status counts them.

        Pods are owned by the workload itself (no ReplicaSets or revisions). Scaling down
        deletes pods gracefully: they stay, terminating, until their processes end, and a
        Deployment's ``status.replicas`` no longer counts them (as in a cluster), while a
        StatefulSet removes its highest ordinal first and waits for it to be gone.
        """
        obj = self.api.store.get(resource, namespace, name)
        ns = self.api.store.get(NAMESPACES, "", namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return  # the namespace controller is removing everything in it
        meta, spec = obj["metadata"], obj["spec"]
        wanted = int(spec.get("replicas", 1))
        pods = [p for p in self.api.store.list(PODS, namespace) if _owned_by(p, meta["uid"])]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        stateful = resource.kind == "StatefulSet"
        if stateful:
            ordinals = {int(p["metadata"]["name"].rsplit("-", 1)[1]): p for p in pods}
            for ordinal in self._condemned(spec, ordinals, wanted):
                self._stop_pod(ordinals[ordinal])
            for ordinal in range(wanted):
                if ordinal not in ordinals:
                    live.append(self._create_workload_pod(obj, f"{name}-{ordinal}"))
        else:
            newest_first = sorted(live, key=lambda p: p["metadata"]["creationTimestamp"])[::-1]
            for pod in newest_first[: max(0, len(live) - wanted)]:
                self._stop_pod(pod)
                live.remove(pod)
            for _ in range(max(0, wanted - len(live))):
                live.append(self._create_workload_pod(obj, None))
        counted = [p for p in live if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in counted if (p.get("status") or {}).get("phase") == "Running")
        generation = meta.get("generation", 1)

        def write(current: dict[str, Any]) -> None:
            status: dict[str, Any] = {**(current.get("status") or {})}
            status.update(observedGeneration=generation, replicas=len(counted))
            for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "currentReplicas"):
                status.pop(key, None)
                count = ready if key in ("readyReplicas", "availableReplicas") else len(counted)
                if count and (key != "currentReplicas" or stateful):
                    status[key] = count
            current["status"] = status

        self.api.update_status(resource, namespace, name, write)

    @staticmethod
    def _condemned(
        spec: dict[str, Any], ordinals: dict[int, dict[str, Any]], wanted: int
    ) -> list[int]:
        """The StatefulSet controller's scale-down: ``Parallel`` deletes every pod past
        ``wanted`` at once; ``OrderedReady`` (the default) one at a time, highest ordinal
        first, once the previous one is gone and while every kept pod is healthy, and it
        does not delete an unhealthy pod that is not the lowest unhealthy one: two pods that
        crash-loop stop the scale-down for good (stateful_set_control.go)."""
        extra = sorted((i for i in ordinals if i >= wanted), reverse=True)
        live = [i for i in extra if not ordinals[i]["metadata"].get("deletionTimestamp")]
        if spec.get("podManagementPolicy") == "Parallel":
            return live
        if len(live) < len(extra) or not live:
            return []  # one at a time: the previous one is gone first
        unhealthy = sorted(i for i, pod in ordinals.items() if not _running_and_ready(pod))
        if any(i < wanted for i in unhealthy):
            return []
        target = live[0]
        if target in unhealthy and target != unhealthy[0]:
            return []
        return [target]

    def _stop_pod(self, pod: dict[str, Any]) -> None:
        self.api.delete_pod(pod, int(pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def _create_workload_pod(self, obj: dict[str, Any], name: str | None) -> dict[str, Any]:
        meta = obj["metadata"]
        template = obj["spec"]["template"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod_meta: dict[str, Any] = {"namespace": meta["namespace"], "labels": labels}
        if name is None:  # a Deployment's pods: <deployment>-<template hash>-<suffix>
            labels["pod-template-hash"] = meta["uid"].replace("-", "")[:10]
            pod_meta["generateName"] = f"{meta['name']}-{labels['pod-template-hash']}-"
        else:
            labels["statefulset.kubernetes.io/pod-name"] = name
            pod_meta["name"] = name
        pod_meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": obj["kind"],
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        return self.api.create_internal(PODS, {"metadata": pod_meta, "spec": template["spec"]})

    # --- volumes ----------------------------------------------------------------------------

    def _volume(self, pv_name: str) -> Path:
        """The storage asset behind a PersistentVolume."""
        return self.root / "volumes" / pv_name

    def volume_folder(self, pvc: dict[str, Any]) -> Path | None:
        """The folder of a bound claim: its PersistentVolume's (None while it is Pending)."""
        if (pvc.get("status") or {}).get("phase") != "Bound" or not pvc["spec"].get("volumeName"):
            return None
        return self._volume(pvc["spec"]["volumeName"])

    def _snapshot_folder(self, handle: str) -> Path:
        """The storage's snapshot of that handle (for the fake's own: the first content's
        name)."""
        return self.root / "snapshots" / handle

    def snapshot_folder(self, content: dict[str, Any]) -> Path:
        source = content["spec"].get("source") or {}
        handle = (content.get("status") or {}).get("snapshotHandle") or source.get("snapshotHandle")
        return self._snapshot_folder(str(handle or content["metadata"]["name"]))

    def _provision(self, pvc: dict[str, Any]) -> bool:
        """Creates the claim's PersistentVolume (``pvc-<claim uid>``, as the external
        provisioner names it) and binds both; False while its data source is not ready."""
        meta, spec = pvc["metadata"], pvc["spec"]
        if spec.get("volumeName"):
            return self._bind_to_volume(pvc)
        storage_class = self.api.store.get(STORAGE_CLASSES, "", spec.get("storageClassName") or "")
        if storage_class is None:
            self.api.record_event(
                PVCS,
                pvc,
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{spec.get("storageClassName", "")}" not found',
                "persistentvolume-controller",
            )
            return False
        driver = str(storage_class["provisioner"])
        source = spec.get("dataSourceRef") or spec.get("dataSource")
        pv_name = f"pvc-{meta['uid']}"
        target = self._volume(pv_name)
        if source:
            origin = self._source_folder(meta["namespace"], source)
            if origin is None:
                return False
            too_small = self._smaller_than_source(pvc, source)
            if too_small:
                self.api.record_event(PVCS, pvc, "ProvisioningFailed", too_small, self.driver)
                return False
            if target.exists():
                shutil.rmtree(target)
            copy_tree(origin, target)
        else:
            target.mkdir(parents=True, exist_ok=True)
        storage = spec["resources"]["requests"]["storage"]
        if self.api.store.get(PVS, "", pv_name) is None:
            volume = {
                "metadata": {
                    "name": pv_name,
                    "annotations": {"pv.kubernetes.io/provisioned-by": driver},
                },
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": spec.get("accessModes", []),
                    "volumeMode": spec.get("volumeMode", "Filesystem"),
                    "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
                    "storageClassName": storage_class["metadata"]["name"],
                    "csi": {"driver": driver, "volumeHandle": f"fake-{meta['uid']}"},
                    "claimRef": _claim_ref(pvc),
                },
            }
            node = (meta.get("annotations") or {}).get(SELECTED_NODE)
            if node:  # provisioned for the node the scheduler chose: reachable from there only
                volume["spec"]["nodeAffinity"] = {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": HOSTNAME, "operator": "In", "values": [node]}
                                ]
                            }
                        ]
                    }
                }
            self.api.create_internal(PVS, volume)
        self._set_volume_phase(pv_name, "Bound")

        def bind(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] != meta["uid"]:
                return
            obj["spec"]["volumeName"] = pv_name
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations.update(
                {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                    "volume.beta.kubernetes.io/storage-provisioner": driver,
                    "volume.kubernetes.io/storage-provisioner": driver,
                }
            )
            obj["status"] = {
                "phase": "Bound",
                "accessModes": obj["spec"].get("accessModes", []),
                "capacity": {"storage": storage},
            }

        self.api.update_status(PVCS, meta["namespace"], meta["name"], bind)
        return True

    def _bind_to_volume(self, pvc: dict[str, Any]) -> bool:
        """A claim that names its volume (``spec.volumeName``) is bound to it when the volume
        is Available or already reserved for this claim (``claimRef``), and big enough."""
        meta, spec = pvc["metadata"], pvc["spec"]
        volume = self.api.store.get(PVS, "", spec["volumeName"])
        if volume is None:
            return False  # Pending until it exists, as the PV controller does
        ref = volume["spec"].get("claimRef")
        if ref and (ref.get("namespace"), ref.get("name")) != (meta["namespace"], meta["name"]):
            return False
        if ref and ref.get("uid") and ref["uid"] != meta["uid"]:
            return False  # the claim it was bound to was deleted: Released, not reusable
        capacity = volume["spec"].get("capacity", {}).get("storage", "0")
        if parse_quantity(capacity) < parse_quantity(spec["resources"]["requests"]["storage"]):
            return False
        modes = set(volume["spec"].get("accessModes") or [])
        same_mode = volume["spec"].get("volumeMode", "Filesystem") == spec.get(
            "volumeMode", "Filesystem"
        )
        if not set(spec.get("accessModes") or []) <= modes or not same_mode:
            self.api.record_event(
                PVCS,
                pvc,
                "VolumeMismatch",
                "Cannot bind to requested volume"
                f' "{volume["metadata"]["name"]}": incompatible accessMode or volumeMode',
                "persistentvolume-controller",
            )
            return False

        def reserve(obj: dict[str, Any]) -> None:
            obj["spec"]["claimRef"] = _claim_ref(pvc)

        self.api.update_status(PVS, "", volume["metadata"]["name"], reserve)
        self._set_volume_phase(volume["metadata"]["name"], "Bound")

        def bind(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] != meta["uid"]:
                return
            obj["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
            obj["status"] = {
                "phase": "Bound",
                "accessModes": volume["spec"].get("accessModes", []),
                "capacity": {"storage": capacity},
            }

        self.api.update_status(PVCS, meta["namespace"], meta["name"], bind)
        return True

    def _set_volume_phase(self, name: str, phase: str) -> None:
        def write(obj: dict[str, Any]) -> None:
            obj["status"] = {"phase": phase}

        self.api.update_status(PVS, "", name, write)

    def _release_volume(self, pvc: dict[str, Any]) -> None:
        """A deleted claim's volume: reclaimed by its policy (``Delete``: the volume and its
        storage go) or ``Released`` (``Retain``: both stay, for an administrator)."""
        name = pvc["spec"].get("volumeName")
        volume = self.api.store.get(PVS, "", name) if name else None
        if (
            volume is None
            or (volume["spec"].get("claimRef") or {}).get("uid") != pvc["metadata"]["uid"]
        ):
            return
        self._set_volume_phase(name, "Released")
        self._reclaim(self.api.store.get(PVS, "", name) or {})

    def _reclaim(self, volume: dict[str, Any]) -> None:
        """A Released volume whose policy is (or was changed to) ``Delete`` is deleted, with
        its storage; deleting a PersistentVolume object by hand leaves the storage."""
        if (volume.get("status") or {}).get("phase") != "Released":
            return
        if volume["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
            return
        self.api.store.remove(PVS, "", volume["metadata"]["name"])
        shutil.rmtree(self._volume(volume["metadata"]["name"]), ignore_errors=True)

    def _reopen(self, volume: dict[str, Any]) -> None:
        """A volume whose ``claimRef`` was cleared, or (re-)pointed at a claim by name (no
        uid), is Available: to any claim, or pre-bound to that one, until a claim binds. Read
        again from the store, not from the event: a claim may have bound it since the event's
        write (a real controller's stale write fails on its resourceVersion)."""
        current = self.api.store.get(PVS, "", volume["metadata"]["name"])
        if current is None:
            return
        ref = current["spec"].get("claimRef") or {}
        if (current.get("status") or {}).get("phase") != "Available" and not ref.get("uid"):
            self._set_volume_phase(current["metadata"]["name"], "Available")
            self._retry_pending_claims()

    def _smaller_than_source(self, pvc: dict[str, Any], source: dict[str, Any]) -> str | None:
        """The external-provisioner's refusal of a claim smaller than its snapshot."""
        if source.get("kind") != "VolumeSnapshot":
            return None
        snapshot = self.api.store.get(SNAPSHOTS, pvc["metadata"]["namespace"], source["name"])
        restore = ((snapshot or {}).get("status") or {}).get("restoreSize")
        requested = pvc["spec"]["resources"]["requests"]["storage"]
        if restore and parse_quantity(requested) < parse_quantity(restore):
            return (
                f"failed to provision volume with StorageClass"
                f' "{pvc["spec"].get("storageClassName", "")}": requested volume size'
                f" {parse_quantity(requested)} is less than the size {parse_quantity(restore)}"
                f" for the source snapshot {source['name']}"
            )
        return None

    def _source_folder(self, namespace: str, source: dict[str, Any]) -> Path | None:
        if source.get("kind") == "PersistentVolumeClaim":
            origin = self.api.store.get(PVCS, namespace, source.get("name", ""))
            return self.volume_folder(origin) if origin else None
        if source.get("kind") == "VolumeSnapshot" and source.get("apiGroup") == SNAPSHOTS.group:
            snapshot = self.api.store.get(SNAPSHOTS, namespace, source.get("name", ""))
            status = (snapshot or {}).get("status") or {}
            if not status.get("readyToUse"):
                return None
            content = self.api.store.get(CONTENTS, "", status["boundVolumeSnapshotContentName"])
            return self.snapshot_folder(content) if content else None
        return None  # other populators are not simulated: the claim stays Pending

    def _retry_pending_claims(self) -> None:
        for pvc in self.api.store.list(PVCS, None):
            if (pvc.get("status") or {}).get("phase") == "Pending" and not pvc["metadata"].get(
                "deletionTimestamp"
            ):
                self._provision(pvc)

    def _protect_claims(self, namespace: str) -> None:
        """kubernetes.io/pvc-protection: released once no running pod uses the claim."""
        in_use = {
            v["persistentVolumeClaim"]["claimName"]
            for p in self.api.store.list(PODS, namespace)
            if p["status"].get("phase") not in ("Succeeded", "Failed")
            for v in p["spec"].get("volumes") or []
            if "persistentVolumeClaim" in v
        }
        for pvc in self.api.store.list(PVCS, namespace):
            meta = pvc["metadata"]
            held = PVC_PROTECTION in (meta.get("finalizers") or [])
            if meta.get("deletionTimestamp") and meta["name"] not in in_use and held:

                def release(obj: dict[str, Any]) -> None:
                    obj["metadata"]["finalizers"] = [
                        f for f in obj["metadata"].get("finalizers") or [] if f != PVC_PROTECTION
                    ]
                    if not obj["metadata"]["finalizers"]:
                        del obj["metadata"]["finalizers"]

                self.api.update_status(PVCS, namespace, meta["name"], release)

    # --- snapshots --------------------------------------------------------------------------

    def _snapshot_class(self, name: str | None) -> tuple[dict[str, Any] | None, str | None]:
        if name:
            found = self.api.store.get(CLASSES, "", name)
            if found is None:
                return None, (
                    "Failed to get snapshot class with error"
                    " volumesnapshotclass.snapshot.storage.k8s.io"
                    f' "{name}" not found'
                )
            return found, None
        defaults = [
            c
            for c in self.api.store.list(CLASSES, None)
            if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
        ]
        if len(defaults) != 1:
            why = (
                "cannot find default snapshot class"
                if not defaults
                else (f"{len(defaults)} default snapshot classes were found")
            )
            return None, f"Failed to set default snapshot class with error {why}"
        return defaults[0], None

    def _snapshot_error(self, snapshot: dict[str, Any], message: str) -> None:
        def write(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            if (status.get("error") or {}).get("message") != message:
                status["error"] = {"message": message, "time": now()}
            status["readyToUse"] = False

        meta = snapshot["metadata"]
        self.api.update_status(SNAPSHOTS, meta["namespace"], meta["name"], write)

    def _take_snapshot(self, snapshot: dict[str, Any]) -> None:
        meta, spec = snapshot["metadata"], snapshot["spec"]
        if meta.get("deletionTimestamp"):
            return
        content_name = (spec.get("source") or {}).get("volumeSnapshotContentName")
        if content_name:
            self._import_snapshot(snapshot, content_name)
            return
        claim_name = (spec.get("source") or {}).get("persistentVolumeClaimName")
        if not claim_name:
            return
        snap_class, error = self._snapshot_class(spec.get("volumeSnapshotClassName"))
        if snap_class is None:
            self._snapshot_error(snapshot, error or "no snapshot class")
            return
        pvc = self.api.store.get(PVCS, meta["namespace"], claim_name)
        if pvc is None:
            self._snapshot_error(
                snapshot,
                f"failed to get input parameters to create snapshot {meta['name']}: failed to"
                f' retrieve PVC {claim_name} from the lister: persistentvolumeclaim "{claim_name}"'
                " not found",
            )
            return
        folder = self.volume_folder(pvc)
        if folder is None:
            self._snapshot_error(
                snapshot,
                f"the PVC {claim_name} is not yet bound to a PV, will not attempt to take a"
                " snapshot",
            )
            return
        content_name = f"snapcontent-{meta['uid']}"
        # Only the claim's own driver can snapshot its volume; a class of another driver (or
        # of one no sidecar serves) is bound to a content that never becomes ready.
        # A class parameter stands for a driver that accepts the request and never finishes.
        stalled = (snap_class.get("parameters") or {}).get(NEVER_READY) == "true"
        volume = self.api.store.get(PVS, "", pvc["spec"]["volumeName"]) or {"spec": {}}
        driver = (volume["spec"].get("csi") or {}).get("driver")
        ready = snap_class["driver"] == driver and not stalled
        capacity = pvc["status"]["capacity"]["storage"]
        handle = content_name
        created_ns = time.time_ns()
        if ready:
            self._snapshots_taken[handle] = (str(driver), parse_quantity(capacity))
            target = self._snapshot_folder(handle)
            if target.exists():
                shutil.rmtree(target)
            copy_tree(folder, target)  # the point-in-time copy
        content: dict[str, Any] = {
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": snap_class.get("deletionPolicy", "Delete"),
                "driver": snap_class["driver"],
                "source": {"volumeHandle": pvc["spec"]["volumeName"]},
                "sourceVolumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                "volumeSnapshotClassName": snap_class["metadata"]["name"],
                "volumeSnapshotRef": {
                    "apiVersion": SNAPSHOTS.api_version,
                    "kind": "VolumeSnapshot",
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                    "resourceVersion": meta["resourceVersion"],
                },
            },
        }
        with self.api.store.lock:
            if self.api.store.get(CONTENTS, "", content_name) is None:
                self.api.create_internal(CONTENTS, content)
        if ready:

            def content_ready(obj: dict[str, Any]) -> None:
                obj["status"] = {
                    "creationTime": created_ns,
                    "readyToUse": True,
                    "restoreSize": parse_quantity(capacity),
                    "snapshotHandle": handle,
                }

            self.api.update_status(CONTENTS, "", content_name, content_ready)

        def bound(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] != meta["uid"]:
                return
            status: dict[str, Any] = {
                "boundVolumeSnapshotContentName": content_name,
                "readyToUse": ready,
            }
            if ready:
                status["creationTime"] = datetime.fromtimestamp(created_ns / 1e9, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                status["restoreSize"] = capacity
            obj["status"] = status

        self.api.update_status(SNAPSHOTS, meta["namespace"], meta["name"], bound)

    def _import_snapshot(self, snapshot: dict[str, Any], content_name: str) -> None:
        """Static provisioning: a VolumeSnapshot bound to the pre-provisioned content it names,
        if the content's ``volumeSnapshotRef`` names it; the content is ready once the driver
        knows its ``snapshotHandle``. Any namespace may import a handle this way."""
        meta = snapshot["metadata"]
        content = self.api.store.get(CONTENTS, "", content_name)
        if content is None:
            self._snapshot_error(snapshot, f"VolumeSnapshotContent {content_name} is missing")
            return
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if (ref.get("namespace"), ref.get("name")) != (meta["namespace"], meta["name"]) or (
            ref.get("uid") not in (None, "", meta["uid"])
        ):
            self._snapshot_error(
                snapshot, f"VolumeSnapshotContent [{content_name}] is bound to a different snapshot"
            )
            return
        handle = str((content["spec"].get("source") or {}).get("snapshotHandle") or "")
        taker, size = self._snapshots_taken.get(handle, ("", None))
        ready = (
            content["spec"].get("driver") == taker
            and size is not None
            and self._snapshot_folder(handle).is_dir()
        )

        def content_bound(obj: dict[str, Any]) -> None:
            obj["spec"]["volumeSnapshotRef"]["uid"] = meta["uid"]
            obj["status"] = {"snapshotHandle": handle, "readyToUse": ready}
            if ready:
                obj["status"].update(creationTime=time.time_ns(), restoreSize=size)

        self.api.update_status(CONTENTS, "", content_name, content_bound)

        def bound(obj: dict[str, Any]) -> None:
            if obj["metadata"]["uid"] != meta["uid"]:
                return
            status: dict[str, Any] = {
                "boundVolumeSnapshotContentName": content_name,
                "readyToUse": ready,
            }
            if ready:
                status["creationTime"] = now()
                status["restoreSize"] = _quantity(size or 0)
            obj["status"] = status

        self.api.update_status(SNAPSHOTS, meta["namespace"], meta["name"], bound)

    def _snapshot_deleted(self, snapshot: dict[str, Any]) -> None:
        content_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName")
        if not content_name:
            return
        content = self.api.store.get(CONTENTS, "", content_name)
        if content is not None and content["spec"].get("deletionPolicy") == "Delete":
            self.api.store.remove(CONTENTS, "", content_name)

    # --- namespaces -------------------------------------------------------------------------

    def _purge_namespace(self, name: str) -> None:
        """The namespace controller: contents deleted, then the namespace itself.

        Objects with finalizers are only marked; the namespace stays Terminating until their
        finalizers are gone (PVC protection lets go once the pods have ended).
        """
        remaining = 0
        for resource in ALL_RESOURCES:
            if not resource.namespaced:
                continue
            for obj in self.api.store.list(resource, name):
                remaining += 1
                meta = obj["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                if resource.key == PODS.key:
                    self.api.delete_pod(obj, 0)
                elif meta.get("finalizers"):
                    meta["deletionTimestamp"] = now()
                    self.api.store.replace(resource, obj)
                else:
                    self.api.store.remove(resource, name, meta["name"])
        if remaining == 0:
            self.api.store.remove(NAMESPACES, "", name)


def _no_pods() -> dict[str, set[str]]:
    return {"succeeded": set(), "failed": set(), "ignored": set(), "fatal": set()}


def _policy_action(policy: dict[str, Any] | None, pod: dict[str, Any]) -> str:
    """The action of the first rule of a Job's ``podFailurePolicy`` matching a failed pod
    (``Count`` when none does): its conditions, or its containers' exit codes."""
    conditions = {
        (c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []
    }
    codes = {
        (s.get("name"), s["state"]["terminated"].get("exitCode"))
        for s in (pod.get("status") or {}).get("containerStatuses") or []
        if (s.get("state") or {}).get("terminated")
    }
    for rule in (policy or {}).get("rules") or []:
        on_conditions = rule.get("onPodConditions") or []
        if any((c["type"], c.get("status", "True")) in conditions for c in on_conditions):
            return str(rule["action"])
        exits = rule.get("onExitCodes")
        if exits:
            values = set(exits.get("values") or [])
            wanted = exits.get("containerName")
            for name, code in codes:
                if (wanted and name != wanted) or code == 0:
                    continue
                if (code in values) == (exits.get("operator") == "In"):
                    return str(rule["action"])
    return "Count"


def _quantity(size: int) -> str:
    """Bytes as the API server renders a quantity (the largest exact binary suffix)."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if size and size % _UNITS[suffix] == 0:
            return f"{size // _UNITS[suffix]}{suffix}"
    return str(size)


def _claim_ref(pvc: dict[str, Any]) -> dict[str, Any]:
    meta = pvc["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }


def _running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )


def _age(stamp: str) -> float:
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()


def copy_tree(origin: Path, target: Path) -> None:
    """A copy of a volume as a storage's snapshot or clone holds it: contents, modes, times
    and owners (user and group) of every file, folder and link."""
    shutil.copytree(origin, target, symlinks=True)
    for folder, subfolders, files in os.walk(origin):
        relative = os.path.relpath(folder, origin)
        for name in [".", *subfolders, *files]:
            source = os.path.join(folder, name)
            info = os.lstat(source)
            os.lchown(os.path.join(target, relative, name), info.st_uid, info.st_gid)
            if name != "." and not os.path.islink(source):
                os.chmod(os.path.join(target, relative, name), stat.S_IMODE(info.st_mode))
    info = os.stat(origin)
    os.chmod(target, stat.S_IMODE(info.st_mode))

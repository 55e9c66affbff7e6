"""Applications of kind ``kubernetes``: PVCs, a PostgreSQL database reached in the cluster,
ConfigMaps and Secrets, all in one namespace.

restic and pg_dump run inside the cluster, in mover Jobs (``movers.py``, running ``cairn
mover``) of cairn's own namespace (``CAIRN_KUBE_NAMESPACE``), as Velero's data mover does:
the backup storage is mounted there only; no mover runs in an application's namespace. The
worker only talks to the API server and, for the configuration objects, to the repository
at its own mount path.

- Backup: a CSI VolumeSnapshot per claim, all requested before any is awaited; each upload
  clones its snapshot into cairn's own namespace (``clones.py``), restores a temporary claim
  from the clone there and a mover there backs it up; the database is dumped by a mover in
  cairn's namespace that reaches the application's database service by its cluster DNS
  name (``<service>.<namespace>.svc``); its password is read by the worker from the
  application's Secret and handed to the mover through the mover's run Secret, never as a
  value in a Job, a workflow payload or a log. ConfigMaps and Secrets are exported by the
  worker into the repository as their own part.
- Restore: the workloads are scaled to zero (their replicas recorded on them); a volume is
  restored by a mover in cairn's namespace into a new volume, which the application's claim
  is then re-bound to (``rebind.py``: a claim cannot be renamed, the workloads name it, and a
  pod mounts claims of its own namespace only); the database
  by a mover (cairn's namespace) into a staging database swapped in by rename, as the local
  platform does.
- Every name derives from the run id (``names.py``), so a retried step awaits what its
  first attempt started; ``release`` deletes everything labelled with the run.
- Drills: a scratch database ``cairn_drill_<id>`` on the application's server and scratch
  claims labelled with the drill in cairn's namespace, all made, measured, checked and
  removed by movers there running the local platform's own drill code.
- Mover pods reach the repository through ``CAIRN_KUBE_STORAGE_VOLUME``: a volume source
  holding what the worker sees at ``CAIRN_STORAGE_MOUNT_ROOT``; a restore or drill that
  reads an offsite copy mounts no storage: its movers reach the target themselves. cairn writes no
  NetworkPolicy; ``release`` removes the ones earlier versions wrote (``network.py``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict
from functools import cached_property
from pathlib import PurePosixPath
from typing import IO, Any, Final, TypeVar

from kubernetes.client import ApiException
from kubernetes.utils import parse_quantity

from adapters.kubernetes import clones, movers, rebind, sharing, snapshots
from adapters.kubernetes.client import Kube, connect, delete_quietly, failure
from adapters.kubernetes.config import apply_objects, export_objects
from adapters.kubernetes.movers import MOVER_SERVICE_ACCOUNT, Mover, Placement, RunAs
from adapters.kubernetes.names import MOVER_LABELS, run_labels, run_name, run_selector
from adapters.kubernetes.network import remove_legacy_policies
from adapters.kubernetes.workloads import pod_identity, scale_down, scale_up
from adapters.local_platform import scratch_database
from adapters.pg_identity import DatabaseIdentity, metadata_identity
from adapters.platform import (
    CheckResult,
    DatabaseDump,
    Measured,
    OtherDatabase,
    PlatformError,
    PointInTime,
    ProgressFn,
    Scratch,
    SqlCheck,
    VolumeFigures,
    VolumeUpload,
)
from adapters.restic import Repository, Restic
from adapters.restic_remote import RemoteReader
from core.boundaries import BoundaryError, check_application_database
from core.settings import Settings

STORAGE_MOUNT: Final = "/cairn-storage"
VOLUME_MOUNT: Final = "/cairn-volume"
CONFIG_FILE: Final = "config.json"
# On a claim whose hand-over to a restored volume a resume finished, the restore not having
# completed: "finished:<run id>" (earlier versions marked an in-place swap with the run id).
SWAP_ANNOTATION: Final = "backup.cairn.io/restore-swap"
SWAP_FINISHED: Final = "finished:"
# On a claim in cairn's namespace that a restore fills: the application's namespace. The
# restore workflow releases nothing, so the resume that ends it deletes these.
RESTORE_OF: Final = "backup.cairn.io/restore-of"
# What a root mover refused by the storage is told: the usual cause, and the way out.
ROOT_SQUASHED: Final = (
    "the backup storage refused a mover run as root (permission denied under"
    f" {STORAGE_MOUNT}): an NFS export with root_squash (the default) makes root its"
    " anonymous user, nobody, who may not use the repository. Give movers the repository's"
    " group (CAIRN_MOVER_FS_GROUP: squashed root keeps its supplementary groups), better"
    " run them as a non-root user in it (CAIRN_MOVER_RUN_AS_USER unset), or export the"
    " storage with no_root_squash"
)
T = TypeVar("T")


class KubernetesPlatform:
    """The platform contract (``adapters/platform.py``) for one application in a cluster."""

    def __init__(
        self, settings: dict[str, Any], secrets: dict[str, Any], *, cairn: Settings, restic: Restic
    ) -> None:
        self.settings = settings
        self.cairn = cairn
        self.restic = restic
        self.namespace = str(settings["namespace"])

    @cached_property
    def kube(self) -> Kube:
        return connect(
            self.cairn.kubeconfig, self.settings.get("context") or self.cairn.kube_context
        )

    # -- what the application registered ------------------------------------------------

    def _claims(self) -> dict[str, str]:
        return dict(self.settings.get("volumes") or {})

    def _claim(self, volume: str) -> str:
        claims = self._claims()
        if volume not in claims:
            raise PlatformError(f"the application has no volume {volume} any more", retryable=False)
        return claims[volume]

    def _database(self) -> dict[str, Any]:
        database = self.settings.get("database")
        if not database:
            raise PlatformError("the application has no database configured", retryable=False)
        try:  # a registration older than a boundary rule must not be written to
            check_application_database(database, self.cairn)
        except BoundaryError as exc:
            raise PlatformError(f"database refused: {exc.message}", retryable=False) from None
        return dict(database)

    def _read_claim(self, volume: str) -> dict[str, Any]:
        claim = self._claim(volume)
        found = rebind.read_claim(self.kube, self.namespace, claim)
        if found is None:
            raise PlatformError(
                f"volume {volume}: the claim {claim} does not exist in namespace {self.namespace}",
                retryable=False,
            )
        return found

    # -- where movers run and how they reach the repository -----------------------------

    def _storage_volume(self) -> dict[str, Any]:
        source = self.cairn.kube_storage_volume
        if not source:
            raise PlatformError(
                "CAIRN_KUBE_STORAGE_VOLUME is not set: mover Jobs cannot reach the backup"
                " storage (give the volume source, e.g. the NFS export, that holds"
                " CAIRN_STORAGE_MOUNT_ROOT)",
                retryable=False,
            )
        if "cephfs" in source:
            raise PlatformError(
                "CAIRN_KUBE_STORAGE_VOLUME: the in-tree cephfs volume was removed in Kubernetes"
                " 1.31; mount CephFS through its CSI driver, as a persistentVolumeClaim",
                retryable=False,
            )
        return {"name": "cairn-storage", **source}

    def _repo_in_pod(self, repo: Repository) -> str:
        """The repository's path in a mover pod: the same place below the storage mount."""
        try:
            relative = repo.path.relative_to(self.cairn.storage_mount_root)
        except ValueError:
            raise PlatformError(
                f"the repository {repo.path} is not below CAIRN_STORAGE_MOUNT_ROOT",
                retryable=False,
            ) from None
        return str(PurePosixPath(STORAGE_MOUNT, *relative.parts))

    def _placement(self, run_id: str) -> Placement:
        return Placement(
            namespace=self.cairn.kube_namespace,
            image=self.cairn.mover_image,
            labels=run_labels(run_id),
            pod_labels=dict(MOVER_LABELS),
            service_account=MOVER_SERVICE_ACCOUNT,
            start_timeout=self.cairn.kube_mover_timeout_seconds,
            run_as_user=self.cairn.mover_run_as_user,
            fs_group=self.cairn.mover_fs_group,
            requests={
                "cpu": self.cairn.kube_mover_cpu_request,
                "memory": self.cairn.kube_mover_memory_request,
            },
        )

    def _run(self, run_id: str, mover: Mover, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Runs a mover in cairn's namespace to its end, then deletes its Job and pod,
        whatever the outcome.

        A failed Job's log is in the error already, and a retry must start a new Job rather
        than find the failed one; a cancelled step stops its mover. Only a worker that died
        leaves the Job running, for the retry to await.
        """
        placement = self._placement(run_id)
        try:
            return movers.run(self.kube, mover, placement, progress)
        except movers.Refused:
            raise
        except PlatformError as exc:
            if movers.user_of(placement, mover.run_as) == 0 and _storage_refused(exc.message):
                raise PlatformError(
                    f"{ROOT_SQUASHED}; {exc.message}", retryable=exc.retryable
                ) from None
            raise
        finally:
            movers.delete_job(self.kube, self.cairn.kube_namespace, mover.name)

    def _repository_mover(
        self, name: str, args: list[str], repo: Repository, **extra: Any
    ) -> Mover:
        """A mover with the storage mounted and the repository password in its run Secret.
        With CAIRN_MOVER_FS_GROUP, the repository is first made that group's (``sharing``),
        so movers of any user in it, and the worker, can use it.

        A restore or drill reading an offsite copy (``self.restic`` a ``RemoteReader``) gets
        a mover without the storage: the copy's place and everyday credentials go in its run
        Secret and its restic reaches the target itself (``--offsite``)."""
        if isinstance(self.restic, RemoteReader):
            return Mover(
                name,
                [*args, "--offsite"],
                secret={**self.restic.remote.handed(), **extra.pop("secret", {})},
                **extra,
            )
        if self.cairn.mover_fs_group is not None:
            sharing.share(repo.path, self.cairn.mover_fs_group)
        volumes = [self._storage_volume(), *extra.pop("volumes", [])]
        mounts = [{"name": "cairn-storage", "mountPath": STORAGE_MOUNT}, *extra.pop("mounts", [])]
        secret = {"RESTIC_PASSWORD": repo.password, **extra.pop("secret", {})}
        return Mover(
            name,
            [*args, "--repo", self._repo_in_pod(repo)],
            volumes=volumes,
            mounts=mounts,
            secret=secret,
            **extra,
        )

    def _database_args(self, database: dict[str, Any]) -> list[str]:
        host = service_host(str(database["host"]), self.namespace)
        args = ["--db-host", host, "--db-port", str(database["port"])]
        args += ["--db-name", str(database["dbname"])]
        if database.get("user"):
            args += ["--db-user", str(database["user"])]
        return args

    def _database_env(self) -> list[dict[str, Any]]:
        """Which database the mover must never touch (it cannot reach cairn's to ask)."""
        return [{"name": "CAIRN_METADATA_IDENTITY", "value": str(metadata_identity(self.cairn))}]

    def _database_secret(self, database: dict[str, Any]) -> dict[str, str]:
        """The database password, read from the application's own Secret for the mover's
        run Secret in cairn's namespace (a pod can only reference Secrets of its own)."""
        ref = database.get("password_secret")
        if not ref:
            return {}
        name, key = str(ref["name"]), str(ref["key"])
        try:
            found = self.kube.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise PlatformError(
                    f"the database password's Secret {name} does not exist in namespace"
                    f" {self.namespace}",
                    retryable=False,
                ) from None
            raise failure(exc, f"reading the Secret {name}") from None
        value = (found.data or {}).get(key)
        if value is None:
            raise PlatformError(
                f"the Secret {self.namespace}/{name} has no key {key} (the database password)",
                retryable=False,
            )
        return {"PGPASSWORD": base64.b64decode(value).decode()}

    def _database_mover(self, name: str, args: list[str], **extra: Any) -> Mover:
        """A mover that connects to the application's database: address, identity guard and
        password (in its run Secret)."""
        database = self._database()
        secret = {**self._database_secret(database), **extra.pop("secret", {})}
        args = [*args, *self._database_args(database)]
        repo: Repository | None = extra.pop("repo", None)
        if repo is not None:
            return self._repository_mover(
                name, args, repo, env=self._database_env(), secret=secret, **extra
            )
        return Mover(name, args, env=self._database_env(), secret=secret, **extra)

    def _volume_identity(self, volume: str) -> RunAs | None:
        """Who a mover that reads or writes a copy of ``volume`` runs as: the identity of
        the application's pods that mount its claim (their user, group, fsGroup and
        supplementary groups), with the repository's group (CAIRN_MOVER_FS_GROUP) as one
        more supplementary group. Only when the storage is a claim, which an fsGroup would
        re-group, is the repository's group the pod's fsGroup instead (the application's
        then supplementary). None when no listed workload mounts the claim or says who it
        runs as: the placement's user (CAIRN_MOVER_RUN_AS_USER) and fsGroup."""
        found = pod_identity(self.kube.api, self.namespace, self._workloads(), self._claim(volume))
        if found is None or (found.user is None and found.fs_group is None):
            return None
        storage_group = self.cairn.mover_fs_group
        storage_is_claim = "persistentVolumeClaim" in (self.cairn.kube_storage_volume or {})
        fs_group = found.fs_group
        if storage_group is not None and (storage_is_claim or fs_group is None):
            fs_group = storage_group
        extra = {found.fs_group, storage_group, *found.supplemental} - {None, fs_group}
        return RunAs(
            user=found.user,
            group=found.group,
            fs_group=fs_group,
            supplemental=tuple(sorted(g for g in extra if g is not None)),
        )

    def _claim_volume(
        self, claim: str, *, read_only: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        volume = {
            "name": "data",
            "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
        }
        return volume, {"name": "data", "mountPath": VOLUME_MOUNT, "readOnly": read_only}

    # -- inventory ------------------------------------------------------------------------

    def has_database(self) -> bool:
        return bool(self.settings.get("database"))

    def volume_names(self) -> list[str]:
        return sorted(self._claims())

    def check_targets(self, database: bool, volumes: list[str]) -> None:
        try:
            self.kube.core.read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise PlatformError(
                    f"the namespace {self.namespace} does not exist", retryable=False
                ) from None
            raise failure(exc, f"reading the namespace {self.namespace}") from None
        if database:
            self._database()
        for volume in volumes:
            if (self._read_claim(volume).get("spec") or {}).get("volumeMode") == "Block":
                raise PlatformError(
                    f"volume {volume}: the claim {self._claim(volume)} is a raw block volume"
                    " (volumeMode Block); movers back up and restore filesystems only",
                    retryable=False,
                )

    def estimate_bytes(self, database: bool, volumes: list[str]) -> int:
        """Claims count at their capacity; the database at its size, asked from the cluster."""
        total = 0
        for volume in volumes:
            claim = self._read_claim(volume)
            capacity = (claim.get("status") or {}).get("capacity") or {}
            requested = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
            total += int(
                parse_quantity(  # type: ignore[no-untyped-call]
                    capacity.get("storage") or requested.get("storage", 0)
                )
            )
        if database:
            probe = str(uuid.uuid4())
            mover = self._database_mover(run_name("size", probe), ["size"])
            total += int(self._run(probe, mover)["bytes"])
        return total

    # -- consistency ----------------------------------------------------------------------

    def quiesce(self) -> str:
        return scale_down(self.kube.api, self.namespace, self._workloads(), self._claims().values())

    def resume(self) -> str:
        """Starts the workloads again, unless a volume's hand-over was interrupted (below)."""
        interrupted = self._settle_swaps()
        if interrupted:
            raise PlatformError(
                f"the application in {self.namespace} is left stopped: the restore of"
                f" {', '.join(interrupted)} was cut while its claim was re-bound to the"
                " restored volume. The claim was re-bound to the complete restored copy (no"
                " volume holds a mix), but the restore did not complete. Restore again, or"
                f" check the data, remove the annotation {SWAP_ANNOTATION} from the claim and"
                " scale the workloads up",
                retryable=False,
            )
        return scale_up(self.kube.api, self.namespace, self._workloads())

    def _settle_swaps(self) -> list[str]:
        """Volumes whose hand-over to the application's claim a restore began and did not
        end (``rebind.py``).

        The hand-over begins only once the restored volume is complete, so it is finished
        here, and the claim marked: no later resume starts the application on a restore
        nobody verified. A claim marked by an earlier version's in-place swap is reported
        the same way.
        """
        for record in rebind.pending(self.kube, self.namespace):
            rebind.finish(self.kube, record, timeout=self.cairn.kube_mover_timeout_seconds)
            self._mark_swap(record.claim, f"{SWAP_FINISHED}{record.run}")
        self._remove_restore_claims()
        interrupted = []
        for volume, claim in self._claims().items():
            found = rebind.read_claim(self.kube, self.namespace, claim)
            if found is not None and (found["metadata"].get("annotations") or {}).get(
                SWAP_ANNOTATION
            ):
                interrupted.append(f"volume {volume} (claim {claim})")
        return interrupted

    def _remove_restore_claims(self) -> None:
        """What restores that failed before their hand-over left in cairn's namespace: their
        new volumes, half filled, with the claims (none is being handed over any more)."""
        home = self.cairn.kube_namespace
        try:
            found = self.kube.core.list_namespaced_persistent_volume_claim(
                home, label_selector=f"{RESTORE_OF}={self.namespace}"
            ).items
        except ApiException as exc:
            raise failure(exc, "listing the claims restores left") from None
        for claim in found:
            snapshots.delete_claim(self.kube, home, claim.metadata.name)

    def _mark_swap(self, claim: str, mark: str | None) -> None:
        try:
            self.kube.core.patch_namespaced_persistent_volume_claim(
                claim, self.namespace, {"metadata": {"annotations": {SWAP_ANNOTATION: mark}}}
            )
        except ApiException as exc:
            raise failure(exc, f"marking the swap of claim {claim}") from None

    def _workloads(self) -> dict[str, Any]:
        return dict(self.settings.get("workloads") or {})

    def snapshot(self, run_id: str, volumes: list[str]) -> PointInTime:
        """A VolumeSnapshot per claim, all asked for before any is awaited.

        On failure (a snapshot never ready) the run's snapshots are deleted here already, so
        nothing is left behind even before the run's cleanup.
        """
        handles = {volume: run_name("snap", run_id, volume) for volume in volumes}
        classes = snapshots.list_classes(self.kube) if volumes else []
        try:
            for volume, name in handles.items():
                snapshot_class = snapshots.class_for(
                    self._read_claim(volume),
                    classes,
                    self.settings.get("snapshot_class"),
                    self.cairn.kube_snapshot_class,
                )
                snapshots.take(
                    self.kube,
                    self.namespace,
                    name,
                    self._claim(volume),
                    snapshot_class,
                    run_labels(run_id),
                )
            for name in handles.values():
                snapshots.wait_ready(
                    self.kube,
                    self.namespace,
                    name,
                    timeout=self.cairn.kube_snapshot_timeout_seconds,
                )
        except PlatformError:
            for name in handles.values():
                snapshots.delete(self.kube, self.namespace, name)
            raise
        return PointInTime(
            consistent=True,
            note=(
                f"CSI VolumeSnapshots of {len(handles)} claim(s) in {self.namespace}, requested"
                " together; each is crash-consistent"
            )
            if handles
            else "no volumes to snapshot",
            volumes=handles,
        )

    def release(self, run_id: str) -> None:
        """Deletes the run's Jobs (with their pods), claims and Secrets in cairn's namespace,
        its snapshot clones there (with their contents, not the storage's snapshots), its
        VolumeSnapshots in the application's; and the NetworkPolicies earlier versions of
        cairn wrote there. A restored volume whose hand-over began is kept (``rebind.py``)."""
        selector = run_selector(run_id)
        remove_legacy_policies(self.kube.api, self.namespace)
        home = self.cairn.kube_namespace
        self._release_in(home, selector)
        for name in clones.list_names(self.kube, selector):
            clones.remove(self.kube, home, name)
        for name in snapshots.list_names(self.kube, self.namespace, selector):
            snapshots.delete(self.kube, self.namespace, name)

    def _release_in(self, namespace: str, selector: str) -> None:
        kube = self.kube
        try:
            jobs = kube.batch.list_namespaced_job(namespace, label_selector=selector).items
            claims = kube.core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            ).items
            secrets = kube.core.list_namespaced_secret(namespace, label_selector=selector).items
        except ApiException as exc:
            raise failure(exc, f"listing what {selector} left in {namespace}") from None
        for job in jobs:
            movers.delete_job(kube, namespace, job.metadata.name)
        for secret in secrets:
            _delete(kube.core.delete_namespaced_secret, secret.metadata.name, namespace, "Secret")
        for claim in claims:
            snapshots.delete_claim(kube, namespace, claim.metadata.name)

    # -- moving data (backup) -------------------------------------------------------------

    def dump_database(
        self, run_id: str, repo: Repository, tags: list[str], progress: ProgressFn
    ) -> DatabaseDump:
        mover = self._database_mover(
            run_name("dump", run_id), ["dump", "--run", run_id, *_tag_args(tags)], repo=repo
        )
        result = self._run(run_id, mover, progress)
        return DatabaseDump(
            str(result["snapshot_id"]),
            int(result["bytes_processed"]),
            int(result["data_added"]),
            int(result["database_size_bytes"]),
            {str(k): int(v) for k, v in result["row_counts"].items()},
            int(result["server_major"]),
        )

    def upload_volume(
        self,
        run_id: str,
        volume: str,
        handle: str,
        repo: Repository,
        tags: list[str],
        *,
        parent: str | None,
        force: bool,
        progress: ProgressFn,
    ) -> VolumeUpload:
        """The snapshot ``handle`` cloned into cairn's namespace, a temporary claim restored
        from the clone there, read by a mover there."""
        source = self._read_claim(volume)
        home, timeout = self.cairn.kube_namespace, self.cairn.kube_snapshot_timeout_seconds
        snapshots.wait_ready(self.kube, self.namespace, handle, timeout=timeout)
        claim = run_name("copy", run_id, volume)
        clones.clone(self.kube, self.namespace, handle, home, claim, run_labels(run_id))
        status = snapshots.wait_ready(self.kube, home, claim, timeout=timeout)
        snapshots.claim_like(
            self.kube,
            home,
            claim,
            source,
            run_labels(run_id),
            snapshot=claim,
            size=status.get("restoreSize"),
        )
        pod_volume, mount = self._claim_volume(claim, read_only=True)
        args = ["upload", VOLUME_MOUNT, "--run", run_id, *_tag_args(tags)]
        if parent:
            args += ["--parent", parent]
        if force:
            args.append("--force")
        mover = self._repository_mover(
            run_name("up", run_id, volume),
            args,
            repo,
            volumes=[pod_volume],
            mounts=[mount],
            node_affinity=snapshots.node_affinity(self.kube, source),
            run_as=self._volume_identity(volume),
        )
        result = self._run(run_id, mover, progress)
        # Uploaded: the copy and the snapshots are not needed any more (a retry of this step
        # finds the restic snapshot first), even when the run later succeeds without release.
        snapshots.delete_claim(self.kube, home, claim)
        clones.remove(self.kube, home, claim)
        snapshots.delete(self.kube, self.namespace, handle)
        return VolumeUpload(
            str(result["snapshot_id"]),
            int(result["bytes_processed"]),
            int(result["data_added"]),
            int(result["files"]),
        )

    def export_config(self, run_id: str, repo: Repository, tags: list[str]) -> VolumeUpload | None:
        """ConfigMaps and Secrets, exported by the worker straight into the repository.

        The document goes to restic through a pipe: Secrets never touch the worker's disk
        and exist outside the cluster only encrypted in the repository.
        """
        selection = dict(self.settings.get("config") or {"include": "none"})
        if selection.get("include", "none") == "none":
            return None
        document = export_objects(self.kube.api, self.namespace, selection)
        result = _from_pipe(
            document,
            lambda pipe: self.restic.backup_stdin(repo, pipe, CONFIG_FILE, tags),
        )
        return VolumeUpload(result.snapshot_id, result.total_bytes_processed, result.data_added, 1)

    # -- moving data (restore) ------------------------------------------------------------

    def restore_database(
        self,
        run_id: str,
        repo: Repository,
        snapshot: str,
        progress: ProgressFn,
        *,
        into: OtherDatabase | Scratch | None = None,
        protect: tuple[DatabaseIdentity, ...] = (),
        plain_sql: bool = False,
    ) -> str:
        if plain_sql:  # the mover runs pg_restore only (issue 26 part 4: local applications)
            raise PlatformError(
                "a Kubernetes application cannot restore a plain-format SQL dump", retryable=False
            )
        if protect:  # the mover asks of cairn's database only (issue 26 part 3: not built)
            raise PlatformError(
                "a Kubernetes application cannot yet receive another application's backup",
                retryable=False,
            )
        if isinstance(into, Scratch):
            return self._restore_scratch_database(into.drill_id, repo, snapshot, progress)
        args = ["restore-database", "--run", run_id, "--snapshot", snapshot]
        secret: dict[str, str] = {}
        if into is not None and into.name:
            args += ["--into-name", into.name]
        elif into is not None and into.url:
            args += ["--into-url", into.url]
            if into.password:
                secret["CAIRN_TARGET_PASSWORD"] = into.password
        mover = self._database_mover(run_name("rdb", run_id), args, repo=repo, secret=secret)
        return str(self._run(run_id, mover, progress)["note"])

    def restore_volume(
        self,
        run_id: str,
        volume: str,
        repo: Repository,
        snapshot: str,
        progress: ProgressFn,
        *,
        into: Scratch | None = None,
    ) -> str:
        """Into a new volume, which the application's claim is then re-bound to
        (``rebind.py``): restored by a mover in cairn's namespace into a claim there shaped
        like the application's, its files counted, then handed over. A retry finishes what
        its first attempt began, or finds it done."""
        if into is not None:
            return self._restore_scratch_volume(into.drill_id, volume, repo, snapshot, progress)
        claim, timeout = self._claim(volume), self.cairn.kube_mover_timeout_seconds
        done = f"volume {volume} (claim {claim}) re-bound to a volume restored from the backup"
        for record in rebind.pending(self.kube, self.namespace):
            if record.claim == claim:  # begun by this run's first attempt, or an earlier run
                rebind.finish(self.kube, record, timeout=timeout)
                if record.run == run_id:
                    self._mark_swap(claim, None)
                    return done
        source = self._read_claim(volume)
        old = str((source.get("spec") or {}).get("volumeName") or "")
        current = rebind.read_volume(self.kube, old) if old else None
        if current is None:
            raise PlatformError(
                f"volume {volume}: the claim {claim} is not bound to a volume", retryable=False
            )
        annotations = current["metadata"].get("annotations") or {}
        if json.loads(annotations.get(rebind.FIGURES) or "{}").get("run") == run_id:
            self._mark_swap(claim, None)
            return done  # a retry after the hand-over ended
        home, staging = self.cairn.kube_namespace, run_name("rvol", run_id, volume)
        labels = {**run_labels(run_id), RESTORE_OF: self.namespace}
        snapshots.claim_like(self.kube, home, staging, source, labels, same_access=True)
        pod_volume, mount = self._claim_volume(staging, read_only=False)
        mover = self._repository_mover(
            run_name("rvol", run_id, volume),
            ["restore-volume", VOLUME_MOUNT, "--run", run_id, "--snapshot", snapshot],
            repo,
            volumes=[pod_volume],
            mounts=[mount],
            node_affinity=snapshots.node_affinity(self.kube, source),
            run_as=self._volume_identity(volume),
        )
        result = self._run(run_id, mover, progress)
        root_note = ""
        if "root" in result:
            root_note = self._own_root(run_id, volume, staging, source, str(result["root"]))
        restored = rebind.read_claim(self.kube, home, staging) or {}
        new = (restored.get("spec") or {}).get("volumeName")
        if not new or "files" not in result:
            raise PlatformError(
                f"volume {volume}: the restored copy {home}/{staging} has no volume or no count"
                " of its files; the application's claim was not touched",
                retryable=False,
            )
        record = rebind.Rebind(
            run=run_id,
            namespace=self.namespace,
            claim=claim,
            old=old,
            new=str(new),
            policy=str(current["spec"].get("persistentVolumeReclaimPolicy") or "Delete"),
            home=home,
            staging=staging,
            shape=rebind.shape_of(source),
        )
        figures = {"run": run_id, "files": int(result["files"]), "bytes": int(result["bytes"])}
        rebind.begin(self.kube, record, figures)
        rebind.finish(self.kube, record, timeout=timeout)
        self._mark_swap(claim, None)
        return done + root_note

    def _own_root(
        self, run_id: str, volume: str, staging: str, source: dict[str, Any], root: str
    ) -> str:
        """Gives the restored volume's root the owner and mode the backup recorded, which
        the restore's mover, not root, could not (a new volume's root is root's): a mover
        of its own, as root, with that volume only (no storage: an NFS export's root_squash
        does not matter). A namespace that refuses root pods (Pod Security ``restricted``)
        leaves the root as it was made, said in the note."""
        pod_volume, mount = self._claim_volume(staging, read_only=False)
        mover = Mover(
            run_name("rroot", run_id, volume),
            ["own-root", VOLUME_MOUNT, "--root", root],
            volumes=[pod_volume],
            mounts=[mount],
            node_affinity=snapshots.node_affinity(self.kube, source),
            run_as=RunAs(user=0),
        )
        try:
            self._run(run_id, mover)
        except movers.Refused as exc:
            return (
                f"; its root was not given back its owner and mode ({root}): a root pod is"
                f" needed for that, and {exc.message}"
            )
        return ""

    def restore_config(self, run_id: str, repo: Repository, snapshot: str) -> str:
        dump = self.restic.dump(repo, snapshot, CONFIG_FILE)
        assert dump.stdout is not None
        document = dump.stdout.read()
        self.restic.finish_dump(repo, dump)
        return apply_objects(self.kube.api, self.namespace, document)

    def measure(
        self,
        database: bool,
        volumes: list[str],
        *,
        into: OtherDatabase | Scratch | None = None,
    ) -> Measured:
        """Counted by movers: one for the database, one per claim (mounted read-only)."""
        if isinstance(into, Scratch):
            return self._measure_scratch(into.drill_id, database, volumes)
        probe = str(uuid.uuid4())
        rows = None
        if database:
            if into is not None and into.url:
                raise PlatformError(
                    "measuring a restore into another server is not supported on Kubernetes",
                    retryable=False,
                )
            extra = ["--into-name", into.name] if into is not None and into.name else []
            rows = self._count_rows(probe, ["measure", "--database", *extra])
        return Measured(rows, {volume: self._restored_figures(volume) for volume in volumes})

    def _restored_figures(self, volume: str) -> VolumeFigures:
        """A live claim's files as counted by the mover that restored its volume, before the
        claim was re-bound to it (no mover runs in the application's namespace to count
        them again; the application stays stopped in between)."""
        spec = self._read_claim(volume).get("spec") or {}
        bound = rebind.read_volume(self.kube, str(spec.get("volumeName") or "")) or {}
        text = ((bound.get("metadata") or {}).get("annotations") or {}).get(rebind.FIGURES)
        if not text:
            raise PlatformError(
                f"volume {volume}: its files are counted when cairn restores it, and the"
                f" volume of the claim {self._claim(volume)} was not restored by cairn",
                retryable=False,
            )
        figures = json.loads(text)
        return VolumeFigures(int(figures["files"]), int(figures["bytes"]))

    def _count_rows(self, probe: str, args: list[str]) -> dict[str, int]:
        """Row counts per table, from a mover ``cairn mover measure|scratch-measure``."""
        mover = self._database_mover(run_name("count", probe), args)
        return {str(k): int(v) for k, v in self._run(probe, mover)["row_counts"].items()}

    def _count_files(self, probe: str, claims: dict[str, str]) -> dict[str, VolumeFigures]:
        """Files and bytes per claim of cairn's namespace, counted by a mover there."""
        figures = {}
        for volume, claim in claims.items():
            pod_volume, mount = self._claim_volume(claim, read_only=True)
            mover = Mover(
                run_name("count", probe, volume),
                ["measure", "--volume", f"{volume}={VOLUME_MOUNT}"],
                volumes=[pod_volume],
                mounts=[mount],
                run_as=self._volume_identity(volume),
            )
            counted = self._run(probe, mover)["volumes"][volume]
            figures[volume] = VolumeFigures(int(counted["files"]), int(counted["bytes"]))
        return figures

    # -- drills: a scratch database on the application's server, scratch claims in cairn's
    # own namespace

    def _scratch_claim(self, drill_id: str, volume: str) -> str:
        return run_name("drill", drill_id, volume)

    def _drill_mover(self, drill_id: str, kind: str, args: list[str]) -> Mover:
        return self._database_mover(run_name(kind, drill_id), [*args, "--run", drill_id])

    def describe_scratch(self, drill_id: str) -> dict[str, str]:
        where = {
            "scratch_claims": f"{run_name('drill', drill_id)}-<volume> in namespace"
            f" {self.cairn.kube_namespace}"
        }
        if self.has_database():
            where["scratch_database"] = scratch_database(drill_id)
        return where

    def _restore_scratch_database(
        self, drill_id: str, repo: Repository, snapshot: str, progress: ProgressFn
    ) -> str:
        mover = self._database_mover(
            run_name("ddb", drill_id),
            ["scratch-database", "--run", drill_id, "--snapshot", snapshot],
            repo=repo,
        )
        return f"database restored into {self._run(drill_id, mover, progress)['database']}"

    def _restore_scratch_volume(
        self, drill_id: str, volume: str, repo: Repository, snapshot: str, progress: ProgressFn
    ) -> str:
        """Into a new claim in cairn's namespace shaped like the volume's, labelled with the
        drill (for removal)."""
        claim = self._scratch_claim(drill_id, volume)
        home, source = self.cairn.kube_namespace, self._read_claim(volume)
        snapshots.claim_like(self.kube, home, claim, source, run_labels(drill_id))
        pod_volume, mount = self._claim_volume(claim, read_only=False)
        mover = self._repository_mover(
            run_name("dvol", drill_id, volume),
            ["restore-volume", VOLUME_MOUNT, "--run", drill_id, "--snapshot", snapshot],
            repo,
            volumes=[pod_volume],
            mounts=[mount],
            node_affinity=snapshots.node_affinity(self.kube, source),
            run_as=self._volume_identity(volume),
        )
        self._run(drill_id, mover, progress)
        return f"volume {volume} restored into the claim {claim} in {home}"

    def _measure_scratch(self, drill_id: str, database: bool, volumes: list[str]) -> Measured:
        rows = None
        if database:
            rows = self._count_rows(drill_id, ["scratch-measure", "--run", drill_id])
        claims = {volume: self._scratch_claim(drill_id, volume) for volume in volumes}
        return Measured(rows, self._count_files(drill_id, claims))

    def run_checks(
        self, drill_id: str, checks: list[SqlCheck], timeout_seconds: int
    ) -> list[CheckResult]:
        listed = json.dumps([asdict(check) for check in checks])
        args = ["checks", "--checks", listed, "--timeout", str(timeout_seconds)]
        found = self._run(drill_id, self._drill_mover(drill_id, "check", args))
        return [CheckResult(**result) for result in found["results"]]

    def remove_scratch(self, drill_id: str) -> None:
        """Drops the scratch database (by a mover) and deletes the drill's claims."""
        if self.has_database():
            self._run(drill_id, self._drill_mover(drill_id, "rmdrill", ["drop-scratch"]))
        self.release(drill_id)


def service_host(host: str, namespace: str) -> str:
    """The database host as a mover in cairn's namespace must write it: a bare service name
    (resolved in the application's namespace by its own pods) becomes the service's cluster
    DNS name ``<service>.<namespace>.svc``; a qualified name, an IP address or a socket
    folder is kept."""
    if host.startswith("/") or "." in host or ":" in host or host == "localhost":
        return host
    return f"{host}.{namespace}.svc"


def _storage_refused(message: str) -> bool:
    """Whether a mover's failure is the backup storage refusing it access."""
    return any(
        STORAGE_MOUNT in line and "permission denied" in line.lower()
        for line in message.splitlines()
    )


def _delete(call: Callable[[str, str], object], name: str, namespace: str, what: str) -> None:
    delete_quietly(lambda: call(name, namespace), f"deleting the {what} {name}")


def _tag_args(tags: list[str]) -> list[str]:
    return [f"--tag={tag}" for tag in tags]


def _from_pipe(document: bytes, consume: Callable[[IO[bytes]], T]) -> T:
    """``consume`` reads ``document`` from a pipe a thread writes it into."""
    read_end, write_end = os.pipe()

    def write() -> None:
        # a reader that stopped early says why itself
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_end, "wb") as out:
            out.write(document)

    writer = threading.Thread(target=write, name="cairn-config-export", daemon=True)
    writer.start()
    try:
        with os.fdopen(read_end, "rb") as pipe:
            return consume(pipe)
    finally:
        writer.join()

"""The REST verbs of the API server on top of the store: what a request does to objects.

Order of a write, as in k8s.io/apiserver's generic registry: decode (400), namespace
admission (404 for a missing namespace, 403 while it terminates), defaulting, schema and
semantic validation (422), then the storage precondition (409 AlreadyExists / Conflict).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from tests.fakes.kube import admission, pod_security, schema
from tests.fakes.kube.errors import (
    STALE,
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
    qualified,
    unsupported_media_type,
)
from tests.fakes.kube.resources import BY_KIND, STORAGE_CLASS, ResourceType, lookup
from tests.fakes.kube.selectors import Predicate, field_selector, label_selector
from tests.fakes.kube.store import Store

NAMESPACES = lookup("", "namespaces")
PODS = lookup("", "pods")
PVC_PROTECTION = "kubernetes.io/pvc-protection"
EVENTS = lookup("", "events")
ACCOUNTS = lookup("", "serviceaccounts")
# Registries with ReturnDeletedObject: a delete answers the object, not a Status.
_RETURNS_DELETED = {"PersistentVolumeClaim", "PersistentVolume", "StorageClass"}
_NO_STATUS = {
    "Secret",
    "ConfigMap",
    "ServiceAccount",
    "Event",
    "VolumeSnapshotClass",
    "Namespace",
    "StorageClass",
}
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_type(resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """``apiVersion`` and ``kind`` first, as the API server serializes objects."""
    rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": resource.api_version, "kind": resource.kind, **rest}


def random_suffix(length: int = 5) -> str:
    # The alphabet of k8s.io/apimachinery/pkg/util/rand (no vowels, no confusable digits).
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(length))


class Result:
    """An answer body with the ``Warning`` headers the request produced."""

    def __init__(self, body: dict[str, Any], warnings: list[str] | None = None, code: int = 200):
        self.body = body
        self.warnings = warnings or []
        self.code = code


class Api:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Set by the simulated kubelet: starts a pod's graceful termination, returns whether
        # the pod is still running (the kubelet removes it once its process has ended).
        self.terminate_pod: Callable[[dict[str, Any], int], bool] = lambda pod, grace: False
        # Namespaces whose new pods a service mesh's webhook gives a sidecar (a test knob).
        self.meshed: set[str] = set()
        self._events_seen: set[tuple[str, str, str]] = set()

    # --- decoding ---------------------------------------------------------------------------

    @staticmethod
    def decode(resource: ResourceType, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("couldn't get version/kind; json parse error: expected an object")
        api_version = body.get("apiVersion") or resource.api_version
        kind = body.get("kind") or resource.kind
        if (api_version, kind) != (resource.api_version, resource.kind):
            if (api_version, kind) in BY_KIND:
                raise bad_request(
                    f"the API version in the data ({api_version}) does not match the expected"
                    f" API version ({resource.api_version})"
                    if api_version != resource.api_version
                    else f"the kind in the data ({kind}) does not match the expected kind"
                    f" ({resource.kind})"
                )
            raise bad_request(
                f'no kind "{kind}" is registered for version "{api_version}" in scheme'
                ' "k8s.io/apimachinery/pkg/runtime/scheme.go:100"'
            )
        body["apiVersion"], body["kind"] = api_version, kind
        if not isinstance(body.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        body.setdefault("metadata", {})
        return body

    def _check_namespace(
        self, resource: ResourceType, namespace: str, body: dict[str, Any]
    ) -> None:
        meta = body["metadata"]
        if not resource.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        meta["namespace"] = namespace

    def _admit(
        self,
        resource: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        field_validation: str,
    ) -> list[str]:
        if resource.kind == "Secret":
            admission.normalize_secret(obj)
        admission.default(resource, obj)
        try:
            warnings = schema.validate(resource, obj, field_validation)
        except schema.SchemaInvalid as exc:
            raise invalid(
                resource.group, resource.kind, obj["metadata"].get("name", ""), exc.causes
            ) from None
        causes = admission.validate(resource, obj, old)
        if causes:
            raise invalid(resource.group, resource.kind, obj["metadata"].get("name", ""), causes)
        return warnings

    def _require_namespace(self, resource: ResourceType, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission plugin."""
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            why = (
                f"unable to create new content in namespace {namespace} because it is being"
                " terminated"
            )
            details: dict[str, Any] = {"name": name}
            if resource.group:
                details["group"] = resource.group
            details["kind"] = resource.plural
            details["causes"] = [
                {"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}
            ]
            raise ApiError(
                403,
                "Forbidden",
                f'{qualified(resource.group, resource.plural)} "{name}" is forbidden: {why}',
                details,
            )

    def _pod_security(self, namespace: str, pod: dict[str, Any]) -> None:
        """The PodSecurity admission plugin, at the namespace's ``enforce`` level."""
        ns = self.store.get(NAMESPACES, "", namespace) or {}
        level = ((ns.get("metadata") or {}).get("labels") or {}).get(pod_security.ENFORCE, "")
        broken = pod_security.violations(level, pod.get("spec") or {})
        if broken:
            name = pod["metadata"]["name"]
            raise ApiError(
                403,
                "Forbidden",
                pod_security.forbidden_message(name, level, broken),
                {"name": name, "kind": "pods"},
            )

    def _mutate_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        """Mutating admission (which runs before the validating plugins): the mesh's sidecar."""
        if namespace in self.meshed:
            admission.inject_sidecar(pod)

    def _service_account(self, namespace: str, pod: dict[str, Any]) -> None:
        """The ServiceAccount admission plugin: a pod may only run as an account of its
        namespace. (Pods naming no account, or ``default``, are admitted without the lookup:
        the fake's service account controller makes ``default`` a moment after the
        namespace, and tests create pods at once.)"""
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        if account == "default" or self.store.get(ACCOUNTS, namespace, account) is not None:
            return
        name = pod["metadata"]["name"]
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account'
            f' {namespace}/{account}: serviceaccount "{account}" not found',
            {"name": name, "kind": "pods"},
        )

    # --- create / read ----------------------------------------------------------------------

    def create(
        self, resource: ResourceType, namespace: str, raw: bytes, params: dict[str, str]
    ) -> Result:
        obj = self.decode(resource, raw)
        self._check_namespace(resource, namespace, obj)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix()}"
        if resource.namespaced:
            self._require_namespace(resource, namespace, str(meta.get("name") or ""))
        if resource.kind == "Pod":
            self._mutate_pod(namespace, obj)
            self._pod_security(namespace, obj)
            self._service_account(namespace, obj)
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "selfLink"):
            meta.pop(key, None)
        if resource.kind not in _NO_STATUS:
            obj.pop("status", None)
        warnings = self._admit(resource, obj, None, params.get("fieldValidation", "Warn"))
        with self.store.lock:
            if self.store.get(resource, namespace if resource.namespaced else "", meta["name"]):
                raise already_exists(resource.group, resource.plural, meta["name"])
            self.initialize(resource, obj)
            if params.get("dryRun") == "All":
                return Result(with_type(resource, obj), warnings, 201)
            stored = self.store.add(resource, obj)
        return Result(with_type(resource, stored), warnings, 201)

    def initialize(self, resource: ResourceType, obj: dict[str, Any]) -> None:
        """Server-set fields of a new object (also used for objects controllers create)."""
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if resource.has_generation:
            meta["generation"] = 1
        if resource.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif resource.kind == "Pod":
            # The ServiceAccount admission plugin.
            account = obj["spec"].setdefault("serviceAccountName", "default")
            obj["spec"]["serviceAccount"] = account
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif resource.kind == "PersistentVolumeClaim":
            # The PVC protection admission plugin: a claim in use outlives its deletion.
            finalizers = meta.setdefault("finalizers", [])
            if PVC_PROTECTION not in finalizers:
                finalizers.append(PVC_PROTECTION)
            obj["spec"].setdefault("storageClassName", STORAGE_CLASS)  # DefaultStorageClass
            obj["status"] = {"phase": "Pending"}
        elif resource.kind == "Job":
            _label_job_template(obj)
            obj["status"] = {}

    def create_internal(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """What a controller's create does: defaulted, validated (a bug here should be loud)."""
        obj = with_type(resource, obj)
        obj.setdefault("metadata", {})
        if not obj["metadata"].get("name"):
            obj["metadata"]["name"] = f"{obj['metadata']['generateName']}{random_suffix()}"
        meta = obj["metadata"]
        if resource.kind == "Pod":
            self._mutate_pod(meta["namespace"], obj)
        self._admit(resource, obj, None, "Strict")
        if resource.kind == "Pod":
            self._pod_security(meta["namespace"], obj)
            self._service_account(meta["namespace"], obj)
        with self.store.lock:
            if self.store.get(resource, meta.get("namespace", ""), meta["name"]) is not None:
                raise already_exists(resource.group, resource.plural, meta["name"])
            self.initialize(resource, obj)
            return self.store.add(resource, obj)

    def record_event(
        self,
        resource: ResourceType,
        obj: dict[str, Any],
        reason: str,
        message: str,
        component: str,
        kind: str = "Warning",
    ) -> None:
        """A core/v1 Event about ``obj``, once per reason and message (a recorder's dedup)."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        with self.store.lock:
            seen = (meta["uid"], reason, message)
            if seen in self._events_seen or self.store.get(NAMESPACES, "", namespace) is None:
                return
            self._events_seen.add(seen)
            stamp = now()
            involved = {
                "apiVersion": resource.api_version,
                "kind": resource.kind,
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            }
            if meta.get("namespace"):
                involved["namespace"] = meta["namespace"]
            event = {
                "metadata": {
                    "name": f"{meta['name']}.{secrets.token_hex(8)}",
                    "namespace": namespace,
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": kind,
                "source": {"component": component},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": component,
                "reportingInstance": "",
            }
            self.create_internal(EVENTS, event)

    def get(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource.group, resource.plural, name)
        return with_type(resource, obj)

    def _predicate(self, resource: ResourceType, params: dict[str, str]) -> Predicate:
        labels = label_selector(params["labelSelector"]) if params.get("labelSelector") else None
        fields = (
            field_selector(resource, params["fieldSelector"])
            if params.get("fieldSelector")
            else None
        )
        return lambda obj: (labels is None or labels(obj)) and (fields is None or fields(obj))

    def list(
        self, resource: ResourceType, namespace: str | None, params: dict[str, str]
    ) -> dict[str, Any]:
        predicate = self._predicate(resource, params)
        with self.store.lock:
            revision = self.store.revision
            items = [o for o in self.store.list(resource, namespace) if predicate(o)]
        start = 0
        token = params.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(state["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                    " (version meta.k8s.io/v1)"
                ) from None
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        limit = int(params.get("limit") or 0)
        if limit > 0 and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start + limit}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        if resource.crd:
            items = [with_type(resource, o) for o in items]
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": meta,
            "items": items,
        }

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None,
        params: dict[str, str],
        stop: threading.Event,
    ) -> Iterator[dict[str, Any]]:
        """``?watch=true``: the events as {type, object}; ERROR with a 410 Status if too old.

        Bad parameters raise here, before the caller starts the 200 stream.
        """
        predicate = self._predicate(resource, params)
        try:
            timeout = float(params.get("timeoutSeconds") or 1800)
            requested = params.get("resourceVersion") or ""
            start = int(requested) if requested not in ("", "0") else -1
        except ValueError:
            raise bad_request(f"invalid watch parameters: {params}") from None
        return self._events(resource, namespace, predicate, start, timeout, stop)

    def _events(
        self,
        resource: ResourceType,
        namespace: str | None,
        predicate: Predicate,
        start: int,
        timeout: float,
        stop: threading.Event,
    ) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        if start < 0:  # "" or "0": the current state as ADDED events first
            with self.store.lock:
                start = self.store.revision
                initial = [o for o in self.store.list(resource, namespace) if predicate(o)]
            for obj in initial:
                yield {"type": "ADDED", "object": with_type(resource, obj)}

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            ns = obj["metadata"].get("namespace", "")
            return (namespace is None or ns == namespace) and predicate(obj)

        try:
            for event in self.store.follow(start, deadline, stop):
                if event.resource.key != resource.key:
                    continue
                now_in, was_in = matches(event.object), matches(event.old)
                if event.type == "ADDED" and now_in:
                    kind = "ADDED"
                elif event.type == "MODIFIED" and (now_in or was_in):
                    kind = "MODIFIED" if now_in and was_in else ("ADDED" if now_in else "DELETED")
                elif event.type == "DELETED" and was_in:
                    kind = "DELETED"
                else:
                    continue
                yield {"type": kind, "object": with_type(resource, event.object)}
        except ApiError as exc:
            yield {"type": "ERROR", "object": exc.status()}

    # --- update / patch ---------------------------------------------------------------------

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        params: dict[str, str],
    ) -> Result:
        obj = self.decode(resource, raw)
        self._check_namespace(resource, namespace, obj)
        if obj["metadata"].get("name") != name:
            raise bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the"
                f" name on the URL ({name})"
            )
        return self._write(resource, namespace, name, lambda _old: obj, params)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        params: dict[str, str],
    ) -> Result:
        patcher = self._patcher(resource, raw, content_type)
        return self._write(resource, namespace, name, patcher, params)

    def _patcher(
        self, resource: ResourceType, raw: bytes, content_type: str
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        accepted = [t for t in PATCH_TYPES if not (resource.crd and "strategic" in t)]
        if content_type not in accepted or content_type == "application/apply-patch+yaml":
            raise unsupported_media_type(content_type, accepted)
        try:
            patch = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None

        def apply(old: dict[str, Any]) -> dict[str, Any]:
            if content_type == "application/json-patch+json":
                result = json_patch(old, patch)
            elif content_type == "application/merge-patch+json":
                result = merge_patch(old, patch)
            else:
                result = schema.strategic_merge(old, patch, schema.root_schema(resource))
            if not isinstance(result, dict):
                raise bad_request("the patch did not produce an object")
            return result

        return apply

    def _write(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        params: dict[str, str],
    ) -> Result:
        ns = namespace if resource.namespaced else ""
        with self.store.lock:
            stored = self.store.get(resource, ns, name)
            if stored is None:
                raise not_found(resource.group, resource.plural, name)
            old = with_type(resource, stored)
            new = change(copy.deepcopy(old))
            new["apiVersion"], new["kind"] = resource.api_version, resource.kind
            meta = new.setdefault("metadata", {})
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise conflict(resource.group, resource.plural, name, STALE)
            _check_uid(resource, old, meta.get("uid"))
            if meta.get("name") != name:
                raise bad_request(
                    f"metadata.name: Invalid value: {meta.get('name')!r}: field is immutable"
                )
            for key in ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if resource.kind not in _NO_STATUS:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            warnings = self._admit(resource, new, old, params.get("fieldValidation", "Warn"))
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return Result(old, warnings)  # a no-op write is not a new revision
            if resource.has_generation and new.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if params.get("dryRun") == "All":
                return Result(new, warnings)
            return Result(with_type(resource, self.save(resource, new)), warnings)

    def save(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Stores a changed object; one being deleted goes once its last finalizer is gone."""
        meta = obj["metadata"]
        held = meta.get("finalizers") or resource.kind in ("Pod", "Namespace")
        if meta.get("deletionTimestamp") and not held:
            self.store.remove(resource, meta.get("namespace", ""), meta["name"])
            return obj
        return self.store.replace(resource, obj)

    def update_status(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any] | None:
        """A controller's status write (read-modify-write under the store lock)."""
        with self.store.lock:
            obj = self.store.get(resource, namespace, name)
            if obj is None:
                return None
            before = copy.deepcopy(obj)
            change(obj)
            if obj == before:
                return obj
            return self.save(resource, obj)

    # --- scale subresource ------------------------------------------------------------------

    def get_scale(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return _scale_of(self.get(resource, namespace, name))

    def write_scale(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str | None,
        params: dict[str, str],
    ) -> Result:
        scale_type = lookup_scale()
        if content_type is None:
            wanted = self.decode(scale_type, raw)
        else:
            patcher = self._patcher(scale_type, raw, content_type)
            wanted = patcher(self.get_scale(resource, namespace, name))

        def change(obj: dict[str, Any]) -> dict[str, Any]:
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise conflict(resource.group, resource.plural, name, STALE)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    [
                        Cause(
                            "FieldValueInvalid",
                            f"Invalid value: {replicas}: must be greater than or equal to 0",
                            "spec.replicas",
                        )
                    ],
                )
            obj["spec"]["replicas"] = replicas
            obj["metadata"].pop("resourceVersion", None)
            return obj

        result = self._write(resource, namespace, name, change, params)
        return Result(_scale_of(result.body), result.warnings)

    # --- delete -----------------------------------------------------------------------------

    def delete(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        params: dict[str, str],
    ) -> Result:
        options = _delete_options(raw, params)
        ns = namespace if resource.namespaced else ""
        warnings: list[str] = []
        with self.store.lock:
            obj = self.store.get(resource, ns, name)
            if obj is None:
                raise not_found(resource.group, resource.plural, name)
            pre = options.get("preconditions") or {}
            _check_uid(resource, obj, pre.get("uid"))
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]
            ):
                raise conflict(
                    resource.group,
                    resource.plural,
                    name,
                    f"Precondition failed: ResourceVersion in precondition:"
                    f" {pre['resourceVersion']}, ResourceVersion in object meta:"
                    f" {obj['metadata']['resourceVersion']}",
                )
            if params.get("dryRun") == "All" or (options.get("dryRun") or []) == ["All"]:
                return Result(with_type(resource, obj))
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy is None:
                if resource.kind == "Job":
                    policy = "Orphan"  # batch/v1 Jobs keep their pods unless told otherwise
                    warnings.append(
                        "child pods are preserved by default when jobs are deleted; set"
                        " propagationPolicy=Background to remove them or set"
                        " propagationPolicy=Orphan to suppress this warning"
                    )
                else:
                    policy = "Background"
            if policy not in ("Orphan", "Background", "Foreground"):
                raise invalid(
                    "",
                    "DeleteOptions",
                    "",
                    [
                        Cause(
                            "FieldValueNotSupported",
                            f'Unsupported value: "{policy}": supported values: "Foreground",'
                            ' "Background", "Orphan", "nil"',
                            "propagationPolicy",
                        )
                    ],
                )
            if resource.kind == "Namespace":
                return Result(self._delete_namespace(obj))
            if obj["metadata"].get("finalizers"):
                # Finalizers hold the object: it is only marked, their owners release it.
                if not obj["metadata"].get("deletionTimestamp"):
                    obj["metadata"]["deletionTimestamp"] = now()
                    obj["metadata"]["deletionGracePeriodSeconds"] = 0
                    obj = self.store.replace(resource, obj)
                return Result(with_type(resource, obj), warnings)
            if resource.kind == "Pod":
                grace = options.get("gracePeriodSeconds")
                if grace is None:
                    grace = int(obj["spec"].get("terminationGracePeriodSeconds", 30))
                return Result(with_type(resource, self.delete_pod(obj, int(grace))))
            self.delete_with_dependents(resource, obj, policy)
        if resource.crd or resource.kind in _RETURNS_DELETED:
            return Result(with_type(resource, obj), warnings)
        details: dict[str, Any] = {"name": name}
        if resource.group:
            details["group"] = resource.group
        details.update(kind=resource.plural, uid=obj["metadata"]["uid"])
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }
        return Result(status, warnings)

    def delete_pod(self, pod: dict[str, Any], grace: int) -> dict[str, Any]:
        meta = pod["metadata"]
        if grace > 0 and not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now()
            meta["deletionGracePeriodSeconds"] = grace
            pod = self.store.replace(PODS, pod)
        if not self.terminate_pod(pod, grace):
            self.store.remove(PODS, meta["namespace"], meta["name"])
        return pod

    def delete_with_dependents(
        self, resource: ResourceType, obj: dict[str, Any], policy: str
    ) -> None:
        """The garbage collector's part, done at once: dependents follow their owner."""
        uid = obj["metadata"]["uid"]
        if policy == "Foreground":
            self._dependents(uid, "Foreground")
            self.store.remove(
                resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
            )
        else:
            self.store.remove(
                resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
            )
            self._dependents(uid, policy)

    def _dependents(self, uid: str, policy: str) -> None:
        from tests.fakes.kube.resources import ALL_RESOURCES

        for dep_type in ALL_RESOURCES:
            for dep in self.store.list(dep_type, None):
                refs = dep["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                if policy == "Orphan":
                    dep["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not dep["metadata"]["ownerReferences"]:
                        del dep["metadata"]["ownerReferences"]
                    self.store.replace(dep_type, dep)
                elif dep_type.kind == "Pod":
                    self.delete_pod(dep, int(dep["spec"].get("terminationGracePeriodSeconds", 30)))
                else:
                    self.delete_with_dependents(dep_type, dep, policy)

    def _delete_namespace(self, obj: dict[str, Any]) -> dict[str, Any]:
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = now()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["status"] = {"phase": "Terminating"}
            obj = self.store.replace(NAMESPACES, obj)  # the namespace controller takes over
        return with_type(NAMESPACES, obj)

    def delete_collection(
        self, resource: ResourceType, namespace: str | None, raw: bytes, params: dict[str, str]
    ) -> Result:
        listed = self.list(resource, namespace, {k: v for k, v in params.items() if k != "limit"})
        warnings: list[str] = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                result = self.delete(resource, meta.get("namespace", ""), meta["name"], raw, params)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                continue
            warnings += [w for w in result.warnings if w not in warnings]
        listed["items"] = [with_type(resource, o) for o in listed["items"]]
        return Result(listed, warnings)


def _check_uid(resource: ResourceType, obj: dict[str, Any], wanted: str | None) -> None:
    """A UID precondition (in the body's metadata or the DeleteOptions) must match."""
    actual = obj["metadata"]["uid"]
    if wanted and wanted != actual:
        raise conflict(
            resource.group,
            resource.plural,
            obj["metadata"]["name"],
            f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}",
        )


def lookup_scale() -> ResourceType:
    return ResourceType("autoscaling", "v1", "scale", "Scale", True, has_generation=False)


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


def _label_job_template(job: dict[str, Any]) -> None:
    """The labels and selector the Job API adds (batch.kubernetes.io/controller-uid & co)."""
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    spec = job["spec"]
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )


def _delete_options(raw: bytes, params: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if raw.strip():
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding DeleteOptions: {exc}") from None
        if isinstance(decoded, dict):
            options.update(decoded)
    if "propagationPolicy" in params:
        options["propagationPolicy"] = params["propagationPolicy"]
    if "gracePeriodSeconds" in params:
        options["gracePeriodSeconds"] = int(params["gracePeriodSeconds"])
    if "orphanDependents" in params:
        options["orphanDependents"] = params["orphanDependents"] == "true"
    return options


# --- RFC 7386 merge patch and RFC 6902 JSON patch ---------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


_REJECTED = "the server rejected our request due to an error in our request"


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind == "test":
                if _walk(doc, parts) != op["value"]:
                    raise ApiError(
                        422,
                        "Invalid",
                        f"{_REJECTED}: testing value {op['path']} failed",
                    )
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _pointer(op["from"])))
                if kind == "move":
                    doc = _remove(doc, _pointer(op["from"]))
                doc = _add(doc, parts, value, replace=False)
            elif kind == "remove":
                doc = _remove(doc, parts)
            elif kind in ("add", "replace"):
                if kind == "replace":
                    _walk(doc, parts)  # must exist
                doc = _add(doc, parts, copy.deepcopy(op["value"]), replace=kind == "replace")
            else:
                raise bad_request(f"unexpected kind of operation: {kind}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(
                422,
                "Invalid",
                f"{_REJECTED}: {op!r} does not apply",
            ) from None
    return doc


def _add(doc: Any, parts: list[str], value: Any, *, replace: bool) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif replace:
            parent[int(last)] = value
        else:
            index = int(last)
            if index > len(parent):
                raise IndexError(index)
            parent.insert(index, value)
    else:
        parent[last] = value
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _walk(doc, parts[:-1])
    if isinstance(parent, list):
        del parent[int(parts[-1])]
    else:
        del parent[parts[-1]]
    return doc

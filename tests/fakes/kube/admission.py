"""Defaulting and the validation the API server does beyond the OpenAPI schema.

Defaults are the ones ``pkg/apis/*/v1/defaults.go`` applies (the fields clients read back);
validation covers the rules of ``pkg/apis/*/validation`` that a malformed manifest of the
resources cairn sends would trip: names, labels, containers, volumes, restart policies,
selectors, PVC requests, Job immutability, and the snapshot CRDs' CEL rules that are
expressible without a CEL engine (the rule texts are matched literally).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from tests.fakes.kube.errors import Cause, bad_request
from tests.fakes.kube.resources import ResourceType, snapshot_crds
from tests.fakes.kube.schema import resolve

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex"
    " used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and"
    " must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex"
    " used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or"
    " 'my_value',  or '12345', regex used for validation is"
    " '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
POD_TEMPLATE_KINDS = {"Job", "Deployment", "StatefulSet"}


# --- defaulting -----------------------------------------------------------------------------


def default(resource: ResourceType, obj: dict[str, Any]) -> None:
    """Fills in what the API server's defaulting would (in place)."""
    kind = resource.kind
    spec = obj.setdefault("spec", {}) if kind not in _SPECLESS else None
    if kind == "Pod" and spec is not None:
        _default_pod_spec(spec)
    elif kind in POD_TEMPLATE_KINDS and spec is not None:
        template = spec.setdefault("template", {})
        _default_pod_spec(template.setdefault("spec", {}))
        if kind == "Job":
            for key, value in (("backoffLimit", 6), ("completions", 1), ("parallelism", 1)):
                spec.setdefault(key, value)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            # As the API server: with a pod failure policy, a pod is replaced once it has
            # ended, never while it is still terminating.
            replace = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
            spec.setdefault("podReplacementPolicy", replace)
        else:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            if kind == "Deployment":
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault(
                    "strategy",
                    {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                )
            else:
                spec.setdefault("podManagementPolicy", "OrderedReady")
                spec.setdefault(
                    "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
                )
                spec.setdefault(
                    "persistentVolumeClaimRetentionPolicy",
                    {"whenDeleted": "Retain", "whenScaled": "Retain"},
                )
    elif kind == "PersistentVolumeClaim" and spec is not None:
        spec.setdefault("volumeMode", "Filesystem")
    elif kind == "PersistentVolume" and spec is not None:
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "Namespace" and spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
    elif kind == "NetworkPolicy" and spec is not None:
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if "egress" in spec else [])
        for rule in spec.get("ingress") or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
        for rule in spec.get("egress") or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    elif kind == "VolumeSnapshotContent" and spec is not None:
        spec.setdefault("deletionPolicy", "Delete")


_SPECLESS = {
    "Secret",
    "ConfigMap",
    "ServiceAccount",
    "Event",
    "VolumeSnapshotClass",
    "StorageClass",
}


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, dict):
            continue
        image = str(container.get("image") or "")
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        container.setdefault("imagePullPolicy", "IfNotPresent" if tagged else "Always")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


# The container a service-mesh injector (a mutating webhook) adds to every pod of a namespace
# it serves: a proxy that runs until the pod is deleted. (Not a native sidecar, an init
# container with restartPolicy Always, which the kubelet stops once the others have ended.)
SIDECAR: dict[str, Any] = {
    "name": "mesh-proxy",
    "image": "mesh.example/proxy:1.0",  # no command: the image's server, idle in the fake
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1337,
    },
}


def inject_sidecar(pod: dict[str, Any]) -> None:
    """What the mesh's webhook does to a pod it serves (in place), before validation."""
    containers = (pod.get("spec") or {}).get("containers")
    if isinstance(containers, list) and all(
        c.get("name") != SIDECAR["name"] for c in containers if isinstance(c, dict)
    ):
        containers.append(json.loads(json.dumps(SIDECAR)))


def normalize_secret(obj: dict[str, Any]) -> None:
    """``stringData`` is merged into ``data`` (base64) on write; bad base64 cannot be decoded."""
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data'
                f" in data[{key}]: {exc}"
            ) from None
    string_data = obj.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data


# --- validation -----------------------------------------------------------------------------


def validate(
    resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
) -> list[Cause]:
    """The causes of a 422 for ``obj`` (``old`` is the stored object on update)."""
    causes: list[Cause] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        causes.append(
            Cause(
                "FieldValueRequired",
                "Required value: name or generateName is required",
                "metadata.name",
            )
        )
    elif resource.kind == "Namespace":
        if not DNS1123_LABEL.fullmatch(name) or len(name) > 63:
            causes.append(_invalid("metadata.name", name, _LABEL_MSG))
    elif not DNS1123_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        causes.append(_invalid("metadata.name", name, _SUBDOMAIN_MSG))
    causes += _labels(meta.get("labels"), "metadata.labels")
    spec = obj.get("spec")
    if resource.kind == "Pod" and isinstance(spec, dict):
        causes += _pod_spec(spec, "spec")
    elif resource.kind in POD_TEMPLATE_KINDS and isinstance(spec, dict):
        causes += _workload(resource.kind, spec, old)
    elif resource.kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        causes += _pvc(spec, (old or {}).get("spec"))
    if resource.crd:
        causes += _cel(
            snapshot_crds()["crds"][resource.plural]["openAPIV3Schema"], obj, old, "", True
        )
    return causes


def _invalid(path: str, value: Any, message: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {message}", path)


def _required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), path)


def _labels(labels: Any, path: str) -> list[Cause]:
    causes = []
    for key, value in (labels or {}).items():
        key_name = str(key).rsplit("/", 1)[-1]
        if not LABEL_NAME.fullmatch(key_name) or len(key_name) > 63:
            causes.append(_invalid(path, key, "name part must consist of alphanumeric characters"))
        if not LABEL_VALUE.fullmatch(str(value)) or len(str(value)) > 63:
            causes.append(_invalid(path, value, _LABEL_VALUE_MSG))
    return causes


def _pod_spec(spec: dict[str, Any], path: str, claims: tuple[str, ...] = ()) -> list[Cause]:
    """``claims``: a StatefulSet's volumeClaimTemplates, which its containers may mount."""
    causes: list[Cause] = []
    volumes = spec.get("volumes") or []
    volume_names: set[str] = set(claims)
    for i, volume in enumerate(volumes):
        vname = str(volume.get("name") or "")
        if vname in volume_names:
            causes.append(
                Cause(
                    "FieldValueDuplicate",
                    f'Duplicate value: "{vname}"',
                    f"{path}.volumes[{i}].name",
                )
            )
        volume_names.add(vname)
        sources = [k for k in volume if k != "name"]
        if len(sources) != 1:
            causes.append(
                _required(f"{path}.volumes[{i}]", "must specify a volume type")
                if not sources
                else Cause(
                    "FieldValueForbidden",
                    "Forbidden: may not specify more than 1 volume type",
                    f"{path}.volumes[{i}]",
                )
            )
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required(f"{path}.containers"))
    names: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        cname = str(container.get("name") or "")
        if cname and not DNS1123_LABEL.fullmatch(cname):
            causes.append(_invalid(f"{where}.name", cname, _LABEL_MSG))
        if cname in names:
            causes.append(
                Cause("FieldValueDuplicate", f'Duplicate value: "{cname}"', f"{where}.name")
            )
        names.add(cname)
        if not container.get("image"):
            causes.append(_required(f"{where}.image"))
        for j, mount in enumerate(container.get("volumeMounts") or []):
            if mount.get("name") not in volume_names:
                causes.append(
                    Cause(
                        "FieldValueNotFound",
                        f'Not found: "{mount.get("name")}"',
                        f"{where}.volumeMounts[{j}].name",
                    )
                )
            if not str(mount.get("mountPath") or "").startswith("/"):
                causes.append(
                    _invalid(
                        f"{where}.volumeMounts[{j}].mountPath",
                        mount.get("mountPath"),
                        "must be an absolute path",
                    )
                )
    return causes


def _workload(kind: str, spec: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    template = spec.get("template") or {}
    claims = tuple(
        str((t.get("metadata") or {}).get("name") or "")
        for t in spec.get("volumeClaimTemplates") or []
    )
    causes = _pod_spec(template.get("spec") or {}, "spec.template.spec", claims)
    causes += _labels(
        (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
    )
    if kind == "Job":
        policy = (template.get("spec") or {}).get("restartPolicy")
        if policy not in ("OnFailure", "Never"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                    "spec.template.spec.restartPolicy",
                )
            )
        old_spec = (old or {}).get("spec")
        if old_spec is not None:
            for key in ("template", "selector", "completionMode", "podFailurePolicy"):
                if spec.get(key) != old_spec.get(key):
                    causes.append(_invalid(f"spec.{key}", spec.get(key), "field is immutable"))
        return causes
    selector = spec.get("selector")
    if not selector:
        causes.append(_required("spec.selector"))
    else:
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not matches_selector(selector, labels):
            causes.append(
                _invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    return causes


def _pvc(spec: dict[str, Any], old_spec: dict[str, Any] | None) -> list[Cause]:
    causes = []
    if not spec.get("accessModes"):
        causes.append(_required("spec.accessModes"))
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        causes.append(_required("spec.resources[storage]"))
    if old_spec is not None:
        mutable = {"resources", "volumeAttributesClassName"}
        if not old_spec.get("volumeName"):  # set once, by the binder (or a pre-binding)
            mutable.add("volumeName")
        before = {k: v for k, v in old_spec.items() if k not in mutable}
        after = {k: v for k, v in spec.items() if k not in mutable}
        if before != after:
            causes.append(
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: spec is immutable after creation except resources.requests and"
                    " volumeAttributesClassName for bound claims",
                    "spec",
                )
            )
    return causes


def matches_selector(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a label map."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- the CRDs' x-kubernetes-validations -----------------------------------------------------

_MISSING = object()


def _cel(
    schema: dict[str, Any], value: Any, old: Any, path: str, root: bool = False
) -> list[Cause]:
    """The snapshot CRDs' CEL rules; transition rules only run when an old value exists."""
    schema = resolve(schema)
    causes: list[Cause] = []
    if value is _MISSING or value is None:
        return causes
    for rule in schema.get("x-kubernetes-validations") or []:
        if not _cel_rule(str(rule["rule"]), value, old):
            causes.append(
                _invalid(path or "<nil>", value, str(rule.get("message") or rule["rule"]))
            )
    props = schema.get("properties") or {}
    if isinstance(value, dict):
        for key, sub in props.items():
            if root and key == "metadata":
                continue
            old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            causes += _cel(sub, value.get(key, _MISSING), old_sub, f"{path}.{key}" if path else key)
    return causes


def _cel_rule(rule: str, value: Any, old: Any) -> bool:
    if "oldSelf" in rule and old is _MISSING:
        return True  # transition rules are skipped on create
    if rule == "self == oldSelf":
        return bool(value == old)
    if rule == "size(self) > 0":
        return len(value) > 0
    match = re.fullmatch(r"!has\(oldSelf\.(\w+)\) \|\| has\(self\.(\w+)\)", rule)
    if match:
        return match.group(1) not in (old or {}) or match.group(2) in value
    match = re.fullmatch(r"has\(self\.(\w+)\) && has\(self\.(\w+)\)", rule)
    if match:
        keys = [k.removeprefix("__").removesuffix("__") for k in match.groups()]
        return all(k in value for k in keys)
    return True  # a rule this fake cannot evaluate is documented as not enforced

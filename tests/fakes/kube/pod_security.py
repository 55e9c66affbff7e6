"""Pod Security admission: the ``baseline`` and ``restricted`` profiles on pod creation.

A namespace labelled ``pod-security.kubernetes.io/enforce`` refuses pods that break its
level, with the API server's message (k8s.io/pod-security-admission, checks ordered by their
id). Workload objects (Jobs, Deployments) are admitted: their pods are refused when a
controller creates them, which shows as a ``FailedCreate`` event on the owner. Only the
checks a mover or a test pod can trip are modelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

ENFORCE: Final = "pod-security.kubernetes.io/enforce"
LEVELS: Final = ("privileged", "baseline", "restricted")
# Volume types the restricted profile allows (restrictedVolumes).
_RESTRICTED_VOLUMES: Final = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_BASELINE_CAPABILITIES: Final = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}

Check = Callable[[dict[str, Any], list[dict[str, Any]]], str | None]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _context(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def _names(containers: list[dict[str, Any]]) -> str:
    quoted = ", ".join(f'"{c["name"]}"' for c in containers)
    return f"container{'s' if len(containers) > 1 else ''} {quoted}"


def _privilege_escalation(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    bad = [c for c in containers if _context(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return (
        f"allowPrivilegeEscalation != false ({_names(bad)} must set"
        " securityContext.allowPrivilegeEscalation=false)"
    )


def _baseline_capabilities(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    added = sorted(
        {
            cap
            for c in containers
            for cap in (_context(c).get("capabilities") or {}).get("add") or []
            if cap not in _BASELINE_CAPABILITIES
        }
    )
    if not added:
        return None
    return f"non-default capabilities (capabilities {', '.join(repr(a) for a in added)})"


def _host_path(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    names = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if not names:
        return None
    return f"hostPath volumes (volume{'s' if len(names) > 1 else ''} {', '.join(names)})"


def _privileged(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    bad = [c for c in containers if _context(c).get("privileged")]
    if not bad:
        return None
    return f"privileged ({_names(bad)} must not set securityContext.privileged=true)"


def _restricted_volumes(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    bad = []
    for volume in spec.get("volumes") or []:
        kind = next((k for k in volume if k != "name"), "")
        if kind not in _RESTRICTED_VOLUMES and kind != "hostPath":  # hostPath: baseline's
            bad.append(f'volume "{volume["name"]}" uses restricted volume type "{kind}"')
    return f"restricted volume types ({', '.join(bad)})" if bad else None


def _run_as_non_root(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    pod = (spec.get("securityContext") or {}).get("runAsNonRoot")
    if pod is False or any(_context(c).get("runAsNonRoot") is False for c in containers):
        return "runAsNonRoot != true (runAsNonRoot must not be set to false)"
    bad = [c for c in containers if pod is not True and _context(c).get("runAsNonRoot") is not True]
    if not bad:
        return None
    return f"runAsNonRoot != true (pod or {_names(bad)} must set securityContext.runAsNonRoot=true)"


def _run_as_user(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    if (spec.get("securityContext") or {}).get("runAsUser") == 0:
        return "runAsUser=0 (pod must not set runAsUser=0)"
    bad = [c for c in containers if _context(c).get("runAsUser") == 0]
    return f"runAsUser=0 ({_names(bad)} must not set runAsUser=0)" if bad else None


def _seccomp(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    allowed = ("RuntimeDefault", "Localhost")
    pod = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    bad = [
        c
        for c in containers
        if ((_context(c).get("seccompProfile") or {}).get("type") or pod) not in allowed
    ]
    if not bad:
        return None
    return (
        f"seccompProfile (pod or {_names(bad)} must set securityContext.seccompProfile.type"
        ' to "RuntimeDefault" or "Localhost")'
    )


def _restricted_capabilities(spec: dict[str, Any], containers: list[dict[str, Any]]) -> str | None:
    undropped = [
        c
        for c in containers
        if "ALL" not in ((_context(c).get("capabilities") or {}).get("drop") or [])
    ]
    added = [
        c
        for c in containers
        if set((_context(c).get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
    ]
    parts = []
    if undropped:
        parts.append(f'{_names(undropped)} must set securityContext.capabilities.drop=["ALL"]')
    if added:
        parts.append(f"{_names(added)} must not include capabilities beyond NET_BIND_SERVICE")
    return f"unrestricted capabilities ({'; '.join(parts)})" if parts else None


# By check id, the order of the API server's message.
_BASELINE: Final[dict[str, Check]] = {
    "capabilities_baseline": _baseline_capabilities,
    "hostPathVolumes": _host_path,
    "privileged": _privileged,
}
_RESTRICTED: Final[dict[str, Check]] = {
    **_BASELINE,
    "allowPrivilegeEscalation": _privilege_escalation,
    "capabilities_restricted": _restricted_capabilities,
    "restrictedVolumes": _restricted_volumes,
    "runAsNonRoot": _run_as_non_root,
    "runAsUser": _run_as_user,
    "seccompProfile_restricted": _seccomp,
}


def violations(level: str, spec: dict[str, Any]) -> list[str]:
    """What a pod spec breaks at ``level`` (empty: admitted)."""
    checks = {"baseline": _BASELINE, "restricted": _RESTRICTED}.get(level, {})
    containers = _containers(spec)
    found = (checks[check](spec, containers) for check in sorted(checks))
    return [text for text in found if text]


def forbidden_message(name: str, level: str, broken: list[str]) -> str:
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": ' + ", ".join(
        broken
    )

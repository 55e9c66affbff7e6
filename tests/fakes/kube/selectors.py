"""``labelSelector`` and ``fieldSelector`` query parameters, parsed as the API server does."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.fakes.kube.errors import bad_request
from tests.fakes.kube.resources import ResourceType

Predicate = Callable[[dict[str, Any]], bool]

_SET_EXPR = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_EXPR = re.compile(r"\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split(text: str) -> list[str]:
    """Splits on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def label_selector(text: str) -> Predicate:
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(text):
        eq = _EQ_EXPR.match(part)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        match = _SET_EXPR.match(part)
        if not match:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: identifier")
        negated, key, op, values = match.groups()
        if op:
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, w=wanted: labels.get(k) in w)
            else:
                checks.append(lambda labels, k=key, w=wanted: labels.get(k) not in w)
        elif negated:
            checks.append(lambda labels, k=key: k not in labels)
        else:
            checks.append(lambda labels, k=key: k in labels)

    def predicate(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return predicate


_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Job": ("status.successful",),
    "Event": ("involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "involvedObject.uid", "reason", "type"),
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_selector(resource: ResourceType, text: str) -> Predicate:
    allowed = ("metadata.name", "metadata.namespace", *_FIELDS.get(resource.kind, ()))
    checks: list[Predicate] = []
    for part in _split(text):
        match = _EQ_EXPR.match(part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = match.groups()
        if path not in allowed:
            if resource.crd:
                known = ", ".join(f'"{a}"' for a in allowed)
                raise bad_request(f'"{path}" is not a known field selector: only {known}')
            raise bad_request(f"field label not supported: {path}")
        if op == "!=":
            checks.append(lambda obj, p=path, v=value: _field_value(obj, p) != v)
        else:
            checks.append(lambda obj, p=path, v=value: _field_value(obj, p) == v)
    return lambda obj: all(check(obj) for check in checks)

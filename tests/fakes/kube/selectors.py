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


LabelCheck = Callable[[dict[str, str]], bool]


def _equals(key: str, value: str, negated: bool) -> LabelCheck:
    return lambda labels: (labels.get(key) == value) != negated


def _member(key: str, values: set[str], negated: bool) -> LabelCheck:
    return lambda labels: (labels.get(key) in values) != negated


def _exists(key: str, negated: bool) -> LabelCheck:
    return lambda labels: (key in labels) != negated


def label_selector(text: str) -> Predicate:
    checks: list[LabelCheck] = []
    for part in _split(text):
        eq = _EQ_EXPR.match(part)
        if eq:
            key, op, value = eq.groups()
            checks.append(_equals(key, value, op == "!="))
            continue
        match = _SET_EXPR.match(part)
        if not match:
            raise bad_request(
                f"unable to parse requirement: found '{part.strip()}', expected: identifier"
            )
        negated, key, op, values = match.groups()
        if op:
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            checks.append(_member(key, wanted, op == "notin"))
        else:
            checks.append(_exists(key, bool(negated)))

    def predicate(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return predicate


_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Job": ("status.successful",),
    "Event": (
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
    ),
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
        checks.append(_field_equals(path, value, op == "!="))
    return lambda obj: all(check(obj) for check in checks)


def _field_equals(path: str, value: str, negated: bool) -> Predicate:
    return lambda obj: (_field_value(obj, path) == value) != negated

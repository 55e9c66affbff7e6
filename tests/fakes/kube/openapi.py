"""``/openapi/v2`` (JSON or gnostic protobuf) and ``/openapi/v3``, built from the same schemas.

kubectl needs them for ``apply``: 1.20 validates a manifest client-side against
``/openapi/v2``, which it only accepts as protobuf (``openapi_v2.Document`` of
github.com/google/gnostic, encoded below for the fields kubectl reads); recent kubectl reads
``/openapi/v3`` to learn that the server validates fields itself (``fieldValidation`` on
PATCH) and to compute strategic merge patches.

The definitions are the official ones shipped by kubernetes-validate (see schema.py), turned
back from JSON Schema into OpenAPI: ``type: [T, "null"]`` becomes ``T``, int-or-string and
quantity unions become strings, ``$ref``s point at ``#/definitions`` or
``#/components/schemas``. Paths list only the resources the fake serves.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from tests.fakes.kube import resources, schema
from tests.fakes.kube.resources import ALL_RESOURCES, KUBERNETES_VERSION, ResourceType

# What kube-openapi's handler answers (the "@" of the requested type is not a valid token).
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_KEEP = {
    "description",
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "format",
    "additionalProperties",
}


def _convert(node: Any, prefix: str) -> Any:
    if isinstance(node, list):
        return [_convert(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    if "oneOf" in node:  # IntOrString, Quantity
        return {
            "type": "string",
            "format": "int-or-string" if "integer" in json.dumps(node) else "quantity",
        }
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out["$ref"] = prefix + str(value).rsplit("/", 1)[-1]
        elif key == "type":
            types = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
            if types:
                out["type"] = types[0]
        elif key == "properties":
            out[key] = {k: _convert(v, prefix) for k, v in value.items()}
        elif key == "enum":
            out[key] = [v for v in value if v is not None]
        elif key.startswith("x-") or key == "required":
            out[key] = value  # extensions and field lists are data, not schemas
        elif key in _KEEP:
            out[key] = _convert(value, prefix)
    return out


def _crd_name(resource: ResourceType) -> str:
    reversed_group = ".".join(reversed(resource.group.split(".")))
    return f"{reversed_group}.{resource.version}.{resource.kind}"


@cache
def _definitions(prefix: str) -> dict[str, Any]:
    defs = {name: _convert(body, prefix) for name, body in schema.definitions()["$defs"].items()}
    for r in ALL_RESOURCES:
        if r.crd:
            body = _convert(resources.snapshot_crds()["crds"][r.plural]["openAPIV3Schema"], prefix)
            body["x-kubernetes-group-version-kind"] = [
                {"group": r.group, "version": r.version, "kind": r.kind}
            ]
            meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
            body.setdefault("properties", {})["metadata"] = {"$ref": prefix + meta}
            defs[_crd_name(r)] = body
    return defs


def _def_name(resource: ResourceType) -> str:
    if resource.crd:
        return _crd_name(resource)
    for name, body in schema.definitions()["$defs"].items():
        for gvk in body.get("x-kubernetes-group-version-kind", ()):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (
                resource.group,
                resource.version,
                resource.kind,
            ):
                return str(name)
    raise KeyError(resource.kind)


def _closure(names: list[str], defs: dict[str, Any]) -> dict[str, Any]:
    """The definitions ``names`` refer to, transitively."""
    wanted: dict[str, Any] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted or name not in defs:
            continue
        wanted[name] = defs[name]
        text = json.dumps(defs[name])
        for part in text.split('"$ref": "')[1:]:
            todo.append(part.split('"', 1)[0].rsplit("/", 1)[-1])
    return wanted


def _base(resource: ResourceType) -> str:
    return f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"


_WRITE_PARAMS = [
    {"name": "dryRun", "in": "query", "schema": {"type": "string"}, "uniqueItems": True},
    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}, "uniqueItems": True},
    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}, "uniqueItems": True},
]


def _paths(resource: ResourceType, ref: str) -> dict[str, Any]:
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    collection = f"{_base(resource)}{scope}/{resource.plural}"
    body = {"content": {"application/json": {"schema": {"$ref": ref}}}}
    patch_body = {
        "content": {
            t: {
                "schema": {
                    "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
                }
            }
            for t in (
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            )
        }
    }
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}

    def op(action: str, **extra: Any) -> dict[str, Any]:
        return {
            "operationId": f"{action}{resource.kind}",
            "responses": ok,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            **extra,
        }

    return {
        collection: {
            "get": op("list"),
            "post": op("post", parameters=_WRITE_PARAMS, requestBody=body),
        },
        collection + "/{name}": {
            "get": op("get"),
            "put": op("put", parameters=_WRITE_PARAMS, requestBody=body),
            "patch": op(
                "patch",
                parameters=[
                    *_WRITE_PARAMS,
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                ],
                requestBody=patch_body,
            ),
            "delete": op("delete"),
        },
    }


@cache
def v3_document(group: str, version: str) -> bytes | None:
    served = [r for r in ALL_RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    prefix = "#/components/schemas/"
    defs = _definitions(prefix)
    paths: dict[str, Any] = {}
    for r in served:
        paths.update(_paths(r, prefix + _def_name(r)))
    extra = [
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    ]
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": paths,
        "components": {"schemas": _closure([_def_name(r) for r in served] + extra, defs)},
    }
    return json.dumps(document).encode()


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else "api/v1"


@cache
def v3_root() -> bytes:
    paths = {}
    for group, versions in resources.group_versions().items():
        for version in versions:
            digest = hashlib.sha512(v3_document(group, version) or b"").hexdigest()[:64].upper()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return json.dumps({"paths": paths}).encode()


@cache
def v2_document() -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": {},
        "definitions": _definitions("#/definitions/"),
    }


def serve(path: str, accept: str) -> tuple[bytes | None, str]:
    """The body and content type for an ``/openapi/...`` path (None: 404)."""
    parts = [p for p in path.split("/") if p]
    if parts == ["openapi", "v2"]:
        if "protobuf" in accept and "json" not in accept.split(",")[0]:
            return v2_protobuf(), PROTOBUF
        return json.dumps(v2_document()).encode(), "application/json"
    if parts == ["openapi", "v3"]:
        return v3_root(), "application/json"
    if parts[:2] == ["openapi", "v3"]:
        rest = parts[2:]
        if rest[:2] == ["api", "v1"] and len(rest) == 2:
            return v3_document("", "v1"), "application/json"
        if len(rest) == 3 and rest[0] == "apis":
            return v3_document(rest[1], rest[2]), "application/json"
    return None, "application/json"


# --- protobuf encoding of openapi_v2.Document (gnostic OpenAPIv2.proto field numbers) --------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode())


def _any(number: int, value: Any) -> bytes:
    return _field(number, _string(2, json.dumps(value)))  # Any.yaml; JSON is YAML


def _named_any(number: int, name: str, value: Any) -> bytes:
    return _field(number, _string(1, name) + _any(2, value))


def _schema(node: dict[str, Any]) -> bytes:
    out = b""
    if "$ref" in node:
        out += _string(1, node["$ref"])
    if "format" in node:
        out += _string(2, node["format"])
    if "description" in node:
        out += _string(4, node["description"])
    for name in node.get("required", []):
        out += _string(19, name)
    for value in node.get("enum", []):
        out += _field(20, _string(2, json.dumps(value)))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out += _field(21, _field(1, _schema(extra)))
    elif isinstance(extra, bool):
        out += _field(21, _varint(2 << 3 | 0) + _varint(int(extra)))
    if "type" in node:
        out += _field(22, _string(1, node["type"]))
    if isinstance(node.get("items"), dict):
        out += _field(23, _field(1, _schema(node["items"])))
    if node.get("properties"):
        props = b"".join(
            _field(1, _string(1, name) + _field(2, _schema(sub)))
            for name, sub in node["properties"].items()
        )
        out += _field(25, props)
    for key, value in node.items():
        if key.startswith("x-"):
            out += _named_any(31, key, value)
    return out


@cache
def v2_protobuf() -> bytes:
    doc = v2_document()
    info = _string(1, doc["info"]["title"]) + _string(2, doc["info"]["version"])
    definitions = b"".join(
        _field(1, _string(1, name) + _field(2, _schema(body)))
        for name, body in doc["definitions"].items()
    )
    return _string(1, "2.0") + _field(2, info) + _field(8, b"") + _field(9, definitions)

"""Objects checked against the official OpenAPI schemas; strategic merge patch driven by them.

Built-in kinds use the definitions of the Kubernetes OpenAPI spec as shipped by the PyPI
package ``kubernetes-validate`` (``kubernetes-json-schema/v<version>-local/_definitions.json``,
generated from the upstream ``api/openapi-spec``), read offline from the installed package.
The snapshot.storage.k8s.io kinds use the CRDs' ``openAPIV3Schema`` (``snapshot_crds.json``).

What the API server does with a body, in order, and what this module mirrors:

* unknown fields are dropped (``fieldValidation=Ignore``/``Warn``, the default: a ``Warning``
  header names them) or rejected with 400 ``strict decoding error: unknown field "x"``
  (``fieldValidation=Strict``, what kubectl sends);
* a value of the wrong JSON type cannot be decoded into the Go struct: 400
  ``<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal ...``;
* missing required fields and values outside an enum are validation errors: 422 ``Invalid``
  with ``details.causes`` (``FieldValueRequired``, ``FieldValueNotSupported``, ...).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.fakes.kube.errors import Cause, bad_request
from tests.fakes.kube.resources import KUBERNETES_VERSION, ResourceType, snapshot_crds

DEFS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@cache
def definitions() -> dict[str, Any]:
    """The ``$defs`` document of kubernetes-validate for the fake's Kubernetes version."""
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    root = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = root / f"v{major_minor}.0-local"
    if not folder.is_dir():
        raise RuntimeError(
            f"the installed kubernetes-validate has no schemas for Kubernetes {major_minor}:"
            " move resources.KUBERNETES_VERSION to a version it ships"
        )
    data: dict[str, Any] = json.loads((folder / "_definitions.json").read_text())
    return data


@cache
def _registry() -> Registry[Any]:
    return Resource.from_contents(definitions()) @ Registry()


def _gvk_index() -> dict[tuple[str, str, str], str]:
    index = {}
    for name, schema in definitions()["$defs"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return index


@cache
def root_schema(resource: ResourceType) -> dict[str, Any]:
    """The schema of a whole object of ``resource``'s kind (a ``$ref`` into the definitions)."""
    if resource.crd:
        schema = copy.deepcopy(snapshot_crds()["crds"][resource.plural]["openAPIV3Schema"])
        # The API server validates metadata of custom resources as ObjectMeta.
        schema["properties"]["metadata"] = {"$ref": f"{DEFS_ID}#/$defs/{OBJECT_META}"}
        return dict(schema)
    name = _gvk_index()[(resource.group, resource.version, resource.kind)]
    return {"$ref": f"{DEFS_ID}#/$defs/{name}"}


@cache
def _validator(resource: ResourceType) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.Draft202012Validator
    validator: jsonschema.protocols.Validator = cls(root_schema(resource), registry=_registry())
    return validator


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follows ``$ref`` (into the definitions) until a schema with content is reached."""
    while "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = definitions()["$defs"][ref]
    return schema


def _field_path(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def prune_unknown(obj: Any, schema: dict[str, Any], path: list[str | int]) -> list[str]:
    """Drops the fields ``schema`` does not know (in place); returns their paths."""
    schema = resolve(schema)
    unknown: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return unknown
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in list(obj):
            if props is not None and key in props:
                unknown += prune_unknown(obj[key], props[key], [*path, key])
            elif isinstance(extra, dict):
                unknown += prune_unknown(obj[key], extra, [*path, key])
            elif props is not None and extra is not True:
                unknown.append(_field_path([*path, key]))
                del obj[key]
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            unknown += prune_unknown(item, schema["items"], [*path, i])
    return unknown


_GO_TYPES = {"string": "string", "integer": "int64", "boolean": "bool", "number": "float64"}
_JSON_KINDS = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}


def validate(resource: ResourceType, obj: dict[str, Any], field_validation: str) -> list[str]:
    """Prunes/rejects unknown fields, then checks types and schema constraints.

    Returns the warnings to send; raises 400 for undecodable values and returns the 422
    causes through ``SchemaInvalid``.
    """
    unknown = prune_unknown(obj, root_schema(resource), [])
    if unknown and field_validation == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise bad_request(f"strict decoding error: {listed}")
    warnings = [f'unknown field "{u}"' for u in unknown] if field_validation != "Ignore" else []
    causes: list[Cause] = []
    for error in sorted(_validator(resource).iter_errors(obj), key=lambda e: list(e.path)):
        path = list(error.absolute_path)
        where = _field_path(path)
        if error.validator == "type":
            kind = _JSON_KINDS.get(type(error.instance), "object")
            wanted = error.validator_value
            wanted = [t for t in wanted if t != "null"] if isinstance(wanted, list) else [wanted]
            go_type = _GO_TYPES.get(str(wanted[0]), str(wanted[0])) if wanted else "object"
            struct_path = ".".join(str(p) for p in path if not isinstance(p, int))
            raise bad_request(
                f'{resource.kind} in version "{resource.version}" cannot be handled as a '
                f"{resource.kind}: json: cannot unmarshal {kind} into Go struct field "
                f"{resource.kind}.{struct_path} of type {go_type}"
            )
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            for key in missing:
                field = f"{where}.{key}" if where else key
                causes.append(Cause("FieldValueRequired", "Required value", field))
        elif error.validator == "enum":
            allowed = ", ".join(json.dumps(v) for v in error.validator_value if v is not None)
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"Unsupported value: {json.dumps(error.instance)}: supported values: {allowed}",
                    where,
                )
            )
        else:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(error.instance)}: {error.message}",
                    where,
                )
            )
    if causes:
        raise SchemaInvalid(causes, warnings)
    return warnings


class SchemaInvalid(Exception):
    def __init__(self, causes: list[Cause], warnings: list[str]) -> None:
        super().__init__(causes)
        self.causes = causes
        self.warnings = warnings


# --- strategic merge patch ------------------------------------------------------------------


def strategic_merge(original: Any, patch: Any, schema: dict[str, Any] | None) -> Any:
    """k8s.io/apimachinery strategicpatch for the cases clients send.

    Maps merge recursively (``null`` deletes a key); lists whose schema says
    ``x-kubernetes-patch-strategy: merge`` merge by ``x-kubernetes-patch-merge-key`` (or as a
    set for lists of scalars); other lists are replaced. Directives: ``$patch: replace`` /
    ``$patch: delete`` (maps and list items), ``$retainKeys``, ``$deleteFromPrimitiveList/x``;
    ``$setElementOrder/x`` only orders and is dropped.
    """
    schema = resolve(schema) if schema else {}
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(original)
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
        sub = resolve(sub) if sub else None
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, list)
            and sub
            and "merge" in str(sub.get("x-kubernetes-patch-strategy", ""))
        ):
            result[key] = _merge_list(result.get(key) or [], value, sub)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key) or {}, value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: list[Any], patch: list[Any], schema: dict[str, Any]) -> list[Any]:
    key = schema.get("x-kubernetes-patch-merge-key")
    items = resolve(schema.get("items") or {})
    if not key:
        merged = list(original)
        merged += [v for v in patch if v not in merged]
        return merged
    result = [copy.deepcopy(v) for v in original]
    for item in patch:
        if not isinstance(item, dict):
            continue
        position = next(
            (
                i
                for i, v in enumerate(result)
                if isinstance(v, dict) and v.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
        elif position is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            result[position] = strategic_merge(result[position], item, items)
    return result

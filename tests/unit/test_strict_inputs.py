"""Every number and flag of a request body is strict: JSON's true is never 1, nor 0 false.

Pydantic's lax mode reads ``false`` as a quota of 0 and ``1`` or ``"yes"`` as true. Strict mode
for a whole model would also refuse the UUIDs and datetimes FastAPI hands over as strings, so
each number and flag is strict on its own; this test keeps a new field from forgetting it.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, Strict, ValidationError

import api.schemas
from api.schemas.common import Input

LAX_PRONE = (int, float, bool)


def _inputs() -> list[type[Input]]:
    for module in pkgutil.iter_modules(api.schemas.__path__):
        importlib.import_module(f"{api.schemas.__name__}.{module.name}")
    found: list[type[Input]] = []
    pending: list[type[Input]] = [Input]
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return [model for model in found if model.model_fields]


def _is_strict(metadata: list[Any] | tuple[Any, ...]) -> bool:
    return any(isinstance(item, Strict) and item.strict for item in metadata)


def _lax_parts(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> list[Any]:
    """The int, float and bool types inside ``annotation`` that are not strict."""
    if get_origin(annotation) is Annotated:
        base, *more = get_args(annotation)
        return _lax_parts(base, [*metadata, *more])
    if annotation in LAX_PRONE:
        return [] if _is_strict(metadata) else [annotation]
    if get_origin(annotation) in (Union, UnionType):
        return [part for arg in get_args(annotation) for part in _lax_parts(arg, metadata)]
    return [part for arg in get_args(annotation) for part in _lax_parts(arg)]


INPUTS = _inputs()


def test_the_sweep_finds_the_request_bodies() -> None:
    names = {model.__name__ for model in INPUTS}
    assert {"WorkspaceUpdate", "StorageCreate", "PolicyIn", "RestoreRequest"} <= names


@pytest.mark.parametrize("model", INPUTS, ids=lambda model: model.__name__)
def test_numbers_and_flags_are_strict(model: type[BaseModel]) -> None:
    lax = {
        name: _lax_parts(field.annotation, field.metadata)
        for name, field in model.model_fields.items()
    }
    assert not {name: parts for name, parts in lax.items() if parts}


@pytest.mark.parametrize(
    ("annotation", "lax"),
    [
        (int, [int]),
        (int | None, [int]),
        (Annotated[int, Strict()] | None, []),
        (list[bool], [bool]),
        (dict[str, Annotated[bool, Strict()]], []),
        (str | NoneType, []),
    ],
)
def test_the_sweep_sees_lax_types_inside_others(annotation: Any, lax: list[Any]) -> None:
    assert _lax_parts(annotation) == lax


@pytest.mark.parametrize("value", [False, True, "5", 5.0])
def test_a_quota_is_a_json_integer(value: object) -> None:
    from api.schemas.registry import WorkspaceUpdate

    with pytest.raises(ValidationError) as refused:
        WorkspaceUpdate.model_validate({"backup_quota_gb": value})
    assert refused.value.errors()[0]["type"] == "int_type"

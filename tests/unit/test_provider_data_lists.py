"""Every provider_data list field takes a JSON list at every front door.

provider_data is validated strictly, as JSON (API bodies, request files and
cluster specs alike). Strict mode refuses a Python list for a tuple field once
a before validator has run: vSphere's ``network: [VM Network, storage-pg]``
was refused as "must be a list" (its validator, which also takes one name,
passed lists on as lists). Each installed type's list fields get a list here;
the values may be refused for what they are, never for being a list.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from talprov.registry import installed_types, load_type, strict_provider_data

_SEQUENCE_ERRORS = {"list_type", "tuple_type", "set_type", "frozen_set_type"}


def _models_in(annotation: Any) -> list[tuple[type[BaseModel], bool]]:
    """The models ``annotation`` holds, each with whether it is inside a list."""
    found = []
    for kind in [annotation, *typing.get_args(annotation)]:
        inner = typing.get_args(kind) if typing.get_origin(kind) in (list, tuple) else ()
        for item in inner:
            if isinstance(item, type) and issubclass(item, BaseModel):
                found.append((item, True))
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.append((kind, False))
    return found


def _is_sequence(annotation: Any) -> bool:
    kinds = [annotation, *typing.get_args(annotation)]
    return any(typing.get_origin(kind) in (list, tuple) or kind in (list, tuple)
               for kind in kinds)


def _list_fields(model: type[BaseModel]) -> list[tuple[Any, ...]]:
    """The location of every list field of ``model``, nested models' included
    (an item of a list of models at index 0)."""
    found: list[tuple[Any, ...]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        nested = _models_in(field.annotation)
        if not nested and _is_sequence(field.annotation):
            found.append((key,))
        for inner, listed in nested:
            found += [(key, *((0,) if listed else ()), *loc) for loc in _list_fields(inner)]
    return found


def _data_at(loc: tuple[Any, ...]) -> Any:
    """provider_data holding ``["a"]`` at ``loc``."""
    if not loc:
        return ["a"]
    head, rest = loc[0], loc[1:]
    if head == 0:
        return [_data_at(rest)]
    return {head: _data_at(rest)}


def _cases() -> list[tuple[str, tuple[Any, ...]]]:
    cases = []
    for info in installed_types():
        if info.unusable is None:
            model = load_type(info.name).data_model
            cases += [(info.name, loc) for loc in _list_fields(model)]
    return cases


@pytest.mark.parametrize(("type_name", "loc"), _cases())
def test_a_list_field_takes_a_json_list(type_name: str, loc: tuple[Any, ...]) -> None:
    model = load_type(type_name).data_model
    data: dict[str, Any] = _data_at(loc)

    try:
        strict_provider_data(model, data)
    except ValidationError as exc:
        refused = [e for e in exc.errors() if tuple(e["loc"]) == loc
                   and e["type"] in _SEQUENCE_ERRORS]
        assert refused == []


def test_vspheres_networks_and_tags_read_as_lists_or_one_name() -> None:
    model = load_type("vmware").data_model

    listed: Any = strict_provider_data(model, {"network": ["VM Network", "storage-pg"],
                                               "tags": ["zone:a"]})
    one: Any = strict_provider_data(model, {"network": "VM Network"})

    assert listed.network == ("VM Network", "storage-pg")
    assert listed.tags == ("zone:a",)
    assert one.network == ("VM Network",)


def test_the_walk_finds_top_level_and_nested_list_fields() -> None:
    cases = set(_cases())

    assert {("vmware", ("network",)), ("vmware", ("tags",))} <= cases
    assert any(type_name == "proxmox" and len(loc) > 1 for type_name, loc in cases)

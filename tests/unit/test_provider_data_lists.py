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


def _list_fields(model: type[BaseModel]) -> list[str]:
    fields = []
    for name, field in model.model_fields.items():
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        if any(typing.get_origin(kind) in (list, tuple) or kind in (list, tuple)
               for kind in kinds):
            fields.append(field.alias or name)
    return fields


def _cases() -> list[tuple[str, str]]:
    cases = []
    for info in installed_types():
        if info.unusable is None:
            model = load_type(info.name).data_model
            cases += [(info.name, field) for field in _list_fields(model)]
    return cases


@pytest.mark.parametrize(("type_name", "field"), _cases())
def test_a_list_field_takes_a_json_list(type_name: str, field: str) -> None:
    model = load_type(type_name).data_model
    data: dict[str, Any] = {field: ["a"]}

    try:
        strict_provider_data(model, data)
    except ValidationError as exc:
        refused = [e for e in exc.errors() if tuple(e["loc"]) == (field,)
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


def test_the_walk_finds_vspheres_list_fields() -> None:
    assert {("vmware", "network"), ("vmware", "tags")} <= set(_cases())

"""docs/providers/<type>.md stays in step with each built-in driver's models.

The rule the docs follow, and this file enforces:

* The config table (under the heading ``## Provider config``) and the
  provider_data table (under ``## provider_data``) have ``key | default | meaning``
  columns. The first cell names one or more fields in backticks; nested fields
  are written as dotted paths, with ``[]`` after a list of objects
  (``ports[].fixed_ips[].subnet``).
* Every field of ``config_model`` / ``data_model``, nested ones included, has a
  row, and every backticked name in a first cell is a field of the model (so a
  removed or renamed field makes the doc fail too).
* The default cell says ``required`` exactly for required fields, ``unset`` for
  fields that default to None, and otherwise shows the default in backticks.
* Every ```yaml (or ```json) block with ``providers:`` validates as a talprov.yaml and its
  instances of this type against ``config_model``; every block with
  ``provider_data:`` validates against ``data_model`` (and, when it is a whole
  request file, against the request file's shape).
"""

from __future__ import annotations

import re
import tomllib
import types
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

from talprov.config import TalprovConfig, parse_yaml_mapping
from talprov.providers.protocol import ProviderClass
from talprov.registry import COMMON_INSTANCE_KEYS, ENTRY_POINT_GROUP, load_type
from talprov.requestfile import RequestFile
from tests.helpers import REPO

DOCS = REPO / "docs" / "providers"
CONFIG_HEADING = "## Provider config"
DATA_HEADING = "## provider_data"


def _built_in_types() -> list[str]:
    # pyproject.toml, not the installed metadata: a built-in type is one this
    # repository ships, whatever else happens to be installed.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return sorted(pyproject["project"]["entry-points"][ENTRY_POINT_GROUP])


BUILT_IN = _built_in_types()


@dataclass(frozen=True)
class Row:
    """One body row of a doc table: the names in its first cell and its default cell."""

    names: tuple[str, ...]
    default: str


@cache
def _doc(type_name: str) -> str:
    return (DOCS / f"{type_name}.md").read_text()


def _section(text: str, heading: str) -> str:
    """The text under the first ``## `` heading that starts with ``heading``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
    assert starts, f"no section headed {heading!r}"
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def _table_rows(section: str) -> list[Row]:
    """The body rows of the first table in ``section`` (header and rule skipped)."""
    rows: list[Row] = []
    seen_table = False
    for line in section.splitlines():
        if not line.startswith("|"):
            if seen_table:
                break
            continue
        seen_table = True
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("key", "field") or set(cells[0]) <= set("-: "):
            continue
        names = tuple(re.findall(r"`([^`]+)`", cells[0]))
        assert names, f"table row names no field in backticks: {line}"
        rows.append(Row(names=names, default=cells[1] if len(cells) > 1 else ""))
    assert rows, "section has no table"
    return rows


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The pydantic models inside a field's type, each with whether it sits in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = get_origin(annotation)
    is_sequence = origin in (list, tuple)
    if origin in (list, tuple, dict, Union, types.UnionType):
        for arg in get_args(annotation):
            for model, in_list in _models_in(arg):
                yield model, in_list or is_sequence


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    """Every field of ``model`` and its nested models by dotted path, ``[]`` for lists."""
    paths: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        # An alias is what users write in YAML, so it is what the doc must name.
        path = prefix + (info.alias or name)
        paths[path] = info
        for nested, in_list in _models_in(info.annotation):
            paths.update(_field_paths(nested, path + ("[]." if in_list else ".")))
    return paths


def _render(value: Any) -> str:
    """A default as the docs write it (YAML spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default_problem(path: str, info: FieldInfo, cell: str) -> str | None:
    """What is wrong with a default cell for one field, or None."""
    says_required = "required" in cell.lower()
    if info.is_required():
        return None if says_required else f"{path}: required, but the doc does not say so"
    if says_required:
        return f"{path}: optional, but the doc says required"
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return None  # a block of defaults: its own fields carry them
    if default is None:
        return None if "unset" in cell.lower() else f"{path}: defaults to None, write 'unset'"
    expected = _render(default)
    if f"`{expected}`" in cell:
        return None
    return f"{path}: default is `{expected}`, the doc says {cell!r}"


def _check_table(model: type[BaseModel], rows: list[Row], what: str) -> list[str]:
    """Problems of a doc table against ``model``: missing, stale and wrong defaults."""
    paths = _field_paths(model)
    documented = {name for row in rows for name in row.names}
    problems = [f"{what}: `{name}` is not a field of the model" for name in
                sorted(documented - paths.keys())]
    for path in paths:
        # A nested block counts as documented through any of its own fields.
        if path not in documented and not any(d.startswith(path + ".") or
                                              d.startswith(path + "[].") for d in documented):
            problems.append(f"{what}: field `{path}` is not documented")
    for row in rows:
        for name in row.names:
            if name in paths:
                problem = _default_problem(name, paths[name], row.default)
                if problem:
                    problems.append(f"{what}: {problem}")
    return problems


def _example_blocks(text: str) -> list[dict[str, Any]]:
    """Every ```yaml and ```json block of a doc that holds a mapping."""
    blocks = re.findall(r"^```(yaml|json)[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    # JSON is YAML, so one parser reads both kinds.
    return [parse_yaml_mapping(body, f"doc {kind} example") for kind, body in blocks]


def _provider(type_name: str) -> ProviderClass:
    return load_type(type_name)


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_config_table_lists_every_config_field_with_its_default(type_name: str) -> None:
    rows = _table_rows(_section(_doc(type_name), CONFIG_HEADING))
    problems = _check_table(_provider(type_name).config_model, rows, f"{type_name}.md config")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_provider_data_table_lists_every_data_field_with_its_default(type_name: str) -> None:
    rows = _table_rows(_section(_doc(type_name), DATA_HEADING))
    problems = _check_table(_provider(type_name).data_model, rows, f"{type_name}.md data")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_worked_examples_validate_against_the_models(type_name: str) -> None:
    assert "\n## Worked example\n" in _doc(type_name)
    cls = _provider(type_name)
    instances: set[str] = set()
    request_providers: list[str] = []
    data_examples = 0
    for block in _example_blocks(_doc(type_name)):
        if "providers" in block:
            config = TalprovConfig.model_validate(block)
            for name, instance in config.providers.items():
                if instance.type != type_name:
                    continue
                raw = instance.model_dump()
                cls.config_model.model_validate(
                    {k: v for k, v in raw.items() if k not in COMMON_INSTANCE_KEYS})
                instances.add(name)
        if "provider_data" in block:
            if "provider" in block:
                request_providers.append(RequestFile.model_validate(block).provider)
            cls.data_model.model_validate(block["provider_data"])
            data_examples += 1
    assert instances, f"{type_name}.md has no talprov.yaml example of type {type_name}"
    assert data_examples, f"{type_name}.md has no provider_data example"
    # A request example names an instance the doc's own config example defines.
    assert set(request_providers) <= instances


def test_the_table_rule_catches_an_undocumented_and_a_stale_field() -> None:
    class Inner(BaseModel):
        size: int

    class Data(BaseModel):
        cores: int = 2
        disks: list[Inner] = []
        note: str | None = None

    rows = [Row(("cores",), "`2`"), Row(("disks[].size",), "required"),
            Row(("gone",), "unset")]
    problems = _check_table(Data, rows, "t")
    assert "t: `gone` is not a field of the model" in problems
    assert "t: field `note` is not documented" in problems
    assert len(problems) == 2
    wrong = _check_table(Data, [Row(("cores",), "`4`"), Row(("disks[].size",), "unset"),
                                Row(("note",), "`x`")], "t")
    assert len(wrong) == 3


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_a_field_added_to_a_model_without_a_doc_row_fails_the_check(type_name: str) -> None:
    cls = _provider(type_name)
    for model, heading in ((cls.config_model, CONFIG_HEADING), (cls.data_model, DATA_HEADING)):
        grown = create_model("Grown", __base__=model, brand_new_knob=(int, 1))
        rows = _table_rows(_section(_doc(type_name), heading))
        assert _check_table(grown, rows, "t") == ["t: field `brand_new_knob` is not documented"]


@pytest.mark.parametrize("type_name", BUILT_IN)
def test_each_driver_says_what_its_machine_uuid_is(type_name: str) -> None:
    # Omni reads machine_uuid as MachineRequestStatus.id (the SMBIOS system UUID
    # the machine joins with); QA found AWS left it null without a word.
    doc = _doc(type_name)
    assert "`machine_uuid`" in doc, f"docs/providers/{type_name}.md: say what machine_uuid is"

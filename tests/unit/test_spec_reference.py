"""docs/spec.md names every key a cluster spec takes, and only those.

The reference's tables (one section per kind) are compared with the keys the
spec's document models take, walked through their nested models: every key
that holds a value must be in its kind's table, and every key a table names
must be one the models take. The page's example must load.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from talprov.scaler.models import ClusterDoc, MachineClass, SetDoc
from talprov.scaler.spec import load_spec

PAGE = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
SECTIONS: dict[str, type[BaseModel]] = {
    "Cluster": ClusterDoc,
    "MachineClass": MachineClass,
    "ControlPlane and Workers": SetDoc,
}
_ROW_KEY = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _members(annotation: Any) -> Iterator[tuple[Any, str]]:
    """The types ``annotation`` holds, each with "[]" when inside a sequence."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _members(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _members(arg)
    elif origin in (tuple, list):
        for inner, _ in _members(typing.get_args(annotation)[0]):
            yield inner, "[]"
    else:
        yield annotation, ""


def spec_keys(model: type[BaseModel], prefix: str = "") -> tuple[set[str], set[str]]:
    """(every key path ``model`` takes, the paths that hold a value rather than a
    nested document), as the reference writes them: ``update.maxSurge``,
    ``failureDomains[].name``."""
    every: set[str] = set()
    leaves: set[str] = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        every.add(path)
        nested = [(kind, brackets) for kind, brackets in _members(field.annotation)
                  if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if not nested:
            leaves.add(path)
        for kind, brackets in nested:
            inner_every, inner_leaves = spec_keys(kind, f"{path}{brackets}.")
            every |= inner_every
            leaves |= inner_leaves
    return every, leaves


def documented_keys(section: str) -> set[str]:
    """The keys in the first cells of the table rows under ``## section``."""
    text = PAGE.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return set(_ROW_KEY.findall(text[start:end if end != -1 else len(text)]))


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_key_of_a_kind_is_in_its_table(section: str) -> None:
    _every, leaves = spec_keys(SECTIONS[section])

    assert sorted(leaves - documented_keys(section)) == []


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_key_a_table_names_is_taken(section: str) -> None:
    every, _leaves = spec_keys(SECTIONS[section])

    assert sorted(documented_keys(section) - every) == []


def test_the_walk_reaches_nested_and_listed_keys() -> None:
    every, leaves = spec_keys(SetDoc)

    assert {"update.maxSurge", "patches[].inline",
            "autoscaling.options.scaleDownUnneededTime",
            "autoscaling.nodeTaints[].effect"} <= leaves
    assert "autoscaling" in every
    assert "autoscaling" not in leaves


def test_the_pages_example_loads(tmp_path: Path) -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.DOTALL)

    spec = load_spec(example, "spec.md", tmp_path, env={})

    assert spec.name == "web"
    assert list(spec.sets) == ["control-planes", "workers"]
    assert spec.sets["workers"].provision_timeout.total_seconds() == 1200
    assert spec.domains("workers") == ("a", "b")

"""A spec error names the line of the field it is about (QA: only the document).

The documents are checked after YAML parsing, which keeps no lines; the
stream is parsed again for them when an error is raised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.errors import ConfigError
from talprov.scaler.spec import load_spec
from talprov.scaler.speclines import line_of

CLUSTER = """\
kind: Cluster
name: web
talos: {version: v1.13.9}
---
kind: MachineClass
name: small
provider: aws-demo
failureDomains:
  - a
  - {name: b}
---
"""  # 11 lines; the set document starts at line 12

WORKERS = """\
kind: Workers
name: workers
machineClass: {name: small, size: 2}
config: {inline: "version: v1alpha1\\nmachine: {type: worker}"}
update:
  maxSurge: 1
  maxUnavailable: 0
"""


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_spec(text, "web.yaml", tmp_path, env={})
    return str(caught.value)


@pytest.mark.parametrize(("change", "field", "line"), [
    # An unknown key, nested: its own line.
    (("  maxUnavailable: 0", "  maxUnavailable: 0\n  maxSurg: 2"), "update.maxSurg", 19),
    # A quoted count inside a flow mapping: the line the mapping is on.
    (("size: 2}", 'size: "2"}'), "machineClass.size", 14),
    # A rule of the whole document (Workers need a name): the document's first line.
    (("name: workers\n", ""), "Workers", 12),
    # Found after the documents are read: an unknown class, a missing config.
    (("{name: small,", "{name: smal,"), "machineClass.name", 14),
    (('config: {inline: "version: v1alpha1\\nmachine: {type: worker}"}\n', ""), "config", 12),
])
def test_an_error_names_the_line_of_its_field(tmp_path: Path, change: tuple[str, str],
                                              field: str, line: int) -> None:
    old, new = change
    assert old in WORKERS

    message = _error(CLUSTER + WORKERS.replace(old, new), tmp_path)

    assert field in message
    assert message.endswith(f"(line {line})")


def test_a_listed_item_is_found_by_its_index(tmp_path: Path) -> None:
    text = CLUSTER.replace("  - {name: b}", "  - {name: b, size: 3}") + WORKERS

    message = _error(text, tmp_path)

    assert "failureDomains[1].size" in message
    assert message.endswith("(line 10)")


def test_lines_are_looked_up_in_the_right_document_past_empty_ones() -> None:
    text = "a: 1\n---\n---\nb:\n  - 1\n  - {c: 2}\n"

    assert line_of(text, 3, ("b", 1, "c")) == 6
    assert line_of(text, 3, ("b", 0)) == 5
    assert line_of(text, 3, ("missing",)) == 4  # as far as the location leads
    assert line_of(text, 2, ()) is not None
    assert line_of(text, 4, ()) is None
    assert line_of("a: [", 1, ()) is None  # not YAML: no line rather than an error


def test_a_good_spec_still_loads(tmp_path: Path) -> None:
    spec = load_spec(CLUSTER + WORKERS, "web.yaml", tmp_path, env={})

    assert spec.sets["workers"].size == 2

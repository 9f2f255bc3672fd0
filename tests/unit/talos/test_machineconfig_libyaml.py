"""Machine configs go through libyaml (fast) with PyYAML's results and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from talprov.errors import ConfigError
from talprov.talos import machineconfig
from talprov.talos.machineconfig import dump_documents, load_documents

STABILITY = Path(__file__).parent / "data" / "stability"
CONFIGS = sorted(STABILITY.glob("*/*.yaml"))


def test_libyaml_is_what_the_configs_go_through() -> None:
    # The wheels PyPI serves for this platform carry libyaml; without it every
    # create would pay about nine times the YAML time.
    assert yaml.__with_libyaml__
    assert issubclass(machineconfig._FastLoader, yaml.CSafeLoader)
    assert issubclass(machineconfig._Dumper, yaml.CSafeDumper)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_libyaml_reads_and_writes_talos_configs_as_pyyaml_does(path: Path) -> None:
    text = path.read_text()
    fast = load_documents(text, "config")
    slow = [d for d in yaml.load_all(text, Loader=machineconfig._Loader) if d is not None]
    assert fast == slow
    slow_text = yaml.dump_all(slow, Dumper=_PythonDumper, sort_keys=False,
                              default_flow_style=False, width=1 << 30)
    assert dump_documents(fast) == slow_text


class _PythonDumper(yaml.SafeDumper):
    """machineconfig's dumper rules on PyYAML's own emitter, to compare with."""


_PythonDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("machine:\n  type: worker\n  type: controlplane\n", "line 3"),
        ("machine:\n  type: [worker\n", "line 3"),
        ("machine: a: b\n", "line 1"),
    ],
)
def test_a_stream_libyaml_refuses_gets_pyyamls_message(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_documents(text, "patch.yaml")
    message = str(caught.value)
    assert message.startswith("patch.yaml"), message
    assert expected in message, message
    with pytest.raises(yaml.MarkedYAMLError) as pyyaml:
        list(yaml.load_all(text, Loader=machineconfig._Loader))
    assert str(pyyaml.value.problem) in message

"""A file that is not UTF-8 text (a binary, a UTF-16 export) is one error line
naming it, exit 2, wherever talprov reads a file a person named.

Before: a traceback ending in UnicodeDecodeError for talprov.yaml, request
files, their config and patch files and ${file:...} references.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

NOT_UTF8 = b"\xff\xfe\x00not text"


def test_a_config_file_that_is_not_text(home: Home) -> None:
    home.config_path.write_bytes(NOT_UTF8)
    result = home.invoke("providers")
    assert_usage_error(result.exit_code, result.output, str(home.config_path),
                       "cannot read config file: not UTF-8 text")


@pytest.mark.parametrize("which", ["request", "config", "patch", "reference"])
def test_request_files_and_what_they_name(home: Home, which: str) -> None:
    binary = home.root / "binary.yaml"
    binary.write_bytes(NOT_UTF8)
    choices: dict[str, dict[str, Any]] = {
        "request": {},
        "config": {"config": {"file": "binary.yaml"}},
        "patch": {"config": {"file": "worker.yaml", "patches": ["binary.yaml"]}},
        "reference": {"provider_data": {"zone": "${file:binary.yaml}"}},
    }
    fields = choices[which]
    request = home.write_request("bin-1", **fields)
    if which == "request":
        request.write_bytes(NOT_UTF8)
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, "not UTF-8 text")
    assert "UnicodeDecodeError" not in result.output


def test_a_spec_that_is_not_text(home: Home) -> None:
    spec = home.root / "cluster.yaml"
    spec.write_bytes(NOT_UTF8)
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, str(spec), "not UTF-8 text")


def test_a_key_given_twice_is_refused_in_every_file(home: Home) -> None:
    """Before: PyYAML kept the last value silently (a second providers: block dropped
    the first); Talos's and Omni's yaml.v3 refuse it, and so does talprov."""
    text = home.config_path.read_text()
    home.config_path.write_text(text + "providers: {}\n")
    result = home.invoke("providers")
    assert_usage_error(result.exit_code, result.output, str(home.config_path),
                       "line", "key 'providers' appears twice")
    home.write_config()
    request = home.write_request("dup-1")
    request.write_text(request.read_text() + "provider: fake\n")
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, str(request), "'provider' appears twice")
    patch = home.root / "patch.yaml"
    patch.write_text("machine:\n  install:\n    wipe: true\n    wipe: false\n")
    request = home.write_request("dup-2", config={"file": "worker.yaml",
                                                  "patches": ["patch.yaml"]})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, str(patch), "'wipe' appears twice")
    spec = home.root / "cluster.yaml"
    spec.write_text("kind: Cluster\nname: c1\nname: c2\ntalos: {version: v1.13.9}\n")
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, str(spec), "'name' appears twice")


def test_merge_keys_may_still_override() -> None:
    import yaml

    from talprov.errors import UniqueKeyLoader

    text = "base: &b {a: 1, b: 2}\nderived:\n  <<: *b\n  a: 3\n"
    assert yaml.load(text, Loader=UniqueKeyLoader)["derived"] == {"a": 3, "b": 2}  # noqa: S506

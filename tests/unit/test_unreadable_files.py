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

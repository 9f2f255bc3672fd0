"""Tables show flags as yes/no, not Python's True/False; JSON and YAML keep booleans."""

from __future__ import annotations

import json

import pytest
import yaml

from talprov.cli.output import emit
from tests.helpers import Home
from tests.unit.test_cli_retry_sets_watch import record_request_set


def test_a_table_says_yes_and_no(capsys: pytest.CaptureFixture[str]) -> None:
    emit([{"name": "a", "deleting": True}, {"name": "b", "deleting": False}], "table",
         columns=("name", "deleting"))
    out = capsys.readouterr().out
    assert "True" not in out
    assert "False" not in out
    assert [line.split() for line in out.splitlines()] == [
        ["name", "deleting"], ["a", "yes"], ["b", "no"]]


def test_set_list_and_get_say_no_json_and_yaml_keep_booleans(home: Home) -> None:
    record_request_set(home, "pool", 1)
    for command in (("set", "list"), ("set", "get", "pool"), ("machine", "get", "pool-0")):
        table = home.invoke(*command).output
        assert "False" not in table, table
        assert "True" not in table, table
    assert home.invoke("set", "list").output.split("\n")[1].split()[-1] == "no"
    got = home.invoke("machine", "get", "pool-0")
    assert got.exit_code == 0, got.output
    assert "marked_for_deletion  no" in got.output
    assert json.loads(home.invoke("set", "get", "pool", "-o", "json").output)["deleting"] is False
    assert yaml.safe_load(home.invoke("set", "get", "pool", "-o", "yaml").output)[
        "deleting"] is False

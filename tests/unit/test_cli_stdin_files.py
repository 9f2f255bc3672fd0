"""``-f -`` reads a spec or request file from stdin (QA C9: `talprov plan -f -`
said "-: cannot read the spec: No such file or directory").

Its relative ``file:`` references are resolved against the current directory.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import Home
from tests.providers.fileprov import Cloud
from tests.unit.test_cluster_apply import write_spec


def test_plan_and_apply_read_the_spec_from_stdin(home: Home,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(home.root, workers=1, control_planes=1).read_text()
    monkeypatch.chdir(home.root)  # where controlplane.yaml and worker.yaml are
    planned = home.invoke("plan", "-f", "-", "-o", "json", input=spec)
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)
    applied = home.invoke("apply", "-f", "-", "--wait", input=spec)
    assert applied.exit_code == 0, applied.output
    assert len(Cloud(home.cloud_path()).machines()) == 2


def test_a_relative_reference_is_looked_for_in_the_current_directory(
        home: Home, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(home.root, workers=1, control_planes=1).read_text()
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    result = home.invoke("plan", "-f", "-", input=spec)
    assert result.exit_code == 2, result.output
    assert "stdin: document 3 (ControlPlane" in result.output
    assert "controlplane.yaml" in result.output


def test_a_mistake_in_a_spec_from_stdin_names_stdin(home: Home) -> None:
    result = home.invoke("plan", "-f", "-", input="kind: Nonsense\n")
    assert result.exit_code == 2, result.output
    assert "talprov: error: stdin: document 1 (Nonsense): kind: must be one of" in result.output


def test_machine_create_reads_the_request_from_stdin(home: Home,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    request = home.write_request("r1").read_text()
    monkeypatch.chdir(home.root)
    result = home.invoke("machine", "create", "-f", "-", input=request)
    assert result.exit_code == 0, result.output
    assert "request r1 recorded" in result.output


def test_a_request_from_stdin_that_is_not_utf8_is_one_line(home: Home) -> None:
    from click.testing import CliRunner

    from talprov.cli import cli

    result = CliRunner().invoke(cli, ["--config", str(home.config_path), "machine", "create",
                                      "-f", "-"], input=b"id: \xff\n")
    assert result.exit_code == 2, result.output
    assert "talprov: error: stdin: cannot read request file: not UTF-8 text" in result.output

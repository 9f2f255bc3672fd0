"""What people read: tables that never cut ids, one timestamp format, a line for
every action, progress and Ctrl-C during waits, errors without class names."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from talprov.cli import output
from talprov.providers.errors import InvalidRequest, QuotaExceeded, Transient, describe_error
from talprov.reconcile.reconciler import Reconciler
from talprov.service.models import MachineRequestView
from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec

LONG_ID = "c2-controlplanes-abcde"
LONG_INFRA = "i-2d5a65739f0c4e1ab"


def test_tables_never_cut_ids_and_drop_empty_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    rows = [{"id": LONG_ID, "provider": "aws", "stage": "provisioning", "step": "wait-running",
             "infra_id": LONG_INFRA, "machine_uuid": None,
             "error": "the endpoint https://ec2.example.test refused the connection " * 2}]
    output.emit(rows, "table", columns=tuple(rows[0]))
    text = capsys.readouterr().out
    assert LONG_ID in text
    assert LONG_INFRA in text
    assert "https://ec2.example.test" in text
    assert "machine_uuid" not in text  # empty in every row
    assert "…" not in text


def test_machine_get_table_shows_addresses_and_labels_and_times_match_the_api(
    home: Home
) -> None:
    request = home.write_request("m1", labels={"team": "blue"})
    assert home.invoke("machine", "create", "-f", str(request), "--wait").exit_code == 0
    view = json.loads(home.invoke("machine", "get", "m1", "-o", "json").output)
    assert view["addresses"]
    table = home.invoke("machine", "get", "m1").output
    assert "team=blue" in table
    for address in view["addresses"]:
        assert address in table
    api = MachineRequestView.model_validate(
        {**view, "config_sha256": None, "join": False}).model_dump(mode="json")
    assert view["created_at"] == api["created_at"]
    assert view["created_at"].endswith("Z")
    assert all(e["at"].endswith("Z") for e in view["events"])


def test_wait_shows_elapsed_time_and_the_step(home: Home) -> None:
    request = home.write_request("m2")
    result = home.invoke("machine", "create", "-f", str(request), "--wait")
    assert re.search(r"m2: provisioning at step \S+ \[\d+m\d\ds\]", result.output), result.output


def test_ctrl_c_during_wait_says_the_request_is_kept(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(Reconciler, "run_until", interrupted)
    request = home.write_request("m3")
    result = home.invoke("machine", "create", "-f", str(request), "--wait")
    assert result.exit_code == 130
    assert "request m3 is recorded; `talprov reconcile`" in result.output
    assert "Traceback" not in result.output


def test_forget_mark_delete_and_reconcile_once_say_what_they_did(home: Home) -> None:
    request = home.write_request("m4")
    home.invoke("machine", "create", "-f", str(request))
    assert "round done: 1 request worked on" in home.invoke("reconcile", "--once").output
    assert "m4: marked" in home.invoke("machine", "mark-delete", "m4").output
    assert "no longer marked" in home.invoke("machine", "mark-delete", "m4", "--undo").output
    said = home.invoke("machine", "forget", "m4", "--reason", "test").output
    assert "m4: forgotten" in said


def test_forget_of_a_cloud_request_says_its_machine_stays_and_no_bare_metal_advice(
        home: Home) -> None:
    # QA: every forget said "bare metal: `talprov baremetal release NAME` frees it".
    request = home.write_request("m5")
    home.invoke("machine", "create", "-f", str(request))
    home.invoke("reconcile", "--once")
    infra_id = json.loads(home.invoke("machine", "get", "m5", "-o", "json").stdout)["infra_id"]
    assert infra_id
    result = home.invoke("machine", "forget", "m5", "--reason", "test")
    assert result.exit_code == 0, result.output
    assert "baremetal" not in result.output
    assert f"its provider was not called: its machine {infra_id} is left as it is" \
        in result.output
    assert "own tools" in result.output


def test_provider_errors_read_without_class_names() -> None:
    assert describe_error(Transient("ec2 at http://x: refused")) == (
        "not answering: ec2 at http://x: refused")
    assert describe_error(QuotaExceeded("vCPU limit")) == "over quota: vCPU limit"
    assert describe_error(InvalidRequest("bad", field="f")) == "f: bad"


def test_a_missing_config_file_is_named_as_looked_for(home: Home) -> None:
    sub = home.root / "sub"
    sub.mkdir()
    spec = write_spec(sub)
    (sub / "controlplane.yaml").unlink()
    result = home.invoke("plan", "-f", str(spec))
    assert result.exit_code == 2
    assert f"cannot read {sub / 'controlplane.yaml'}:" in result.output


def test_a_version_without_v_gets_one_message_everywhere(home: Home) -> None:
    expected = "'1.13.9' is not a Talos version like v1.13.9 (with the leading v)"
    request = home.write_request("m5", talos_version="1.13.9")
    spec = write_spec(home.root, version="1.13.9")
    schematic = home.root / "schematic.yaml"
    schematic.write_text("customization: {}\n")
    for args in (("machine", "create", "-f", str(request)), ("plan", "-f", str(spec)),
                 ("image", "urls", "-f", str(schematic), "--version", "1.13.9")):
        result = home.invoke(*args)
        assert result.exit_code == 2
        assert expected in result.output, result.output


def test_demo_does_not_overwrite_a_users_files(home: Home, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "cluster.yaml").write_text(yaml.safe_dump({"kind": "Cluster", "name": "prod"}))
    before = (mine / "cluster.yaml").read_text()
    result = home.invoke("demo", "--dir", str(mine))
    assert result.exit_code == 2
    assert f"{mine / 'cluster.yaml'} exists and was not written by the demo" in result.output
    # The module, not the `demo` command that talprov.cli exports under the same name.
    demo_module = importlib.import_module("talprov.cli.demo")
    monkeypatch.setattr(demo_module, "stdin_is_terminal", lambda: True)
    result = home.invoke("demo", "--dir", str(mine), input="n\n")
    assert result.exit_code == 1
    assert "Overwrite it?" in result.output
    assert (mine / "cluster.yaml").read_text() == before


def test_table_cells_are_printed_as_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    from talprov.cli.output import emit

    emit([{"name": "x", "detail": "pip install 'talprov[proxmox]'",
           "labels": {"tier": "[red]w[/red]"}, "endpoint": "https://[fd00::1]:8006"}],
         "table")
    shown = capsys.readouterr().out
    assert "talprov[proxmox]" in shown
    assert "[red]w[/red]" in shown
    assert "[fd00::1]" in shown


def test_machine_get_shows_what_the_apis_get_shows(home: Home) -> None:
    # QA: README said `get` shows every field, but the config digest and the
    # join flag the API shows were missing.
    request = home.write_request("shown-1")
    assert home.invoke("machine", "create", "-f", str(request)).exit_code == 0
    view = json.loads(home.invoke("machine", "get", "shown-1", "-o", "json").output)
    assert view["join"] is False
    assert len(view["config_sha256"]) == 64
    assert "config" not in view


def test_machine_get_shows_every_stage_change_of_a_request(home: Home) -> None:
    """QA: `machine get`'s events seemed to end at "provisioning started" after the
    machine provisioned. Not reproduced (the AWS demo and the file provider both
    record it); this pins the whole life: created, started, provisioned, deletion
    asked, gone; and a failure's own event."""
    request = home.write_request("life-1")
    assert home.invoke("machine", "create", "-f", str(request), "--wait").exit_code == 0

    def messages(request_id: str) -> list[str]:
        got = home.invoke("machine", "get", request_id, "-o", "json")
        return [e["message"] for e in json.loads(got.output)["events"]]

    provisioned = messages("life-1")
    assert provisioned[:2] == ["request created", "provisioning started"]
    assert provisioned[-1].startswith("provisioned: ")
    assert home.invoke("machine", "delete", "life-1", "--wait").exit_code == 0
    gone = messages("life-1")
    assert gone[len(provisioned):] == ["deletion requested (was provisioned)",
                                       "deprovisioned: gone"]
    home.providers["fake"]["fail_creates"] = True
    home.write_config()
    doomed = home.write_request("life-2")
    assert home.invoke("machine", "create", "-f", str(doomed), "--wait").exit_code == 1
    assert messages("life-2")[-1].startswith("failed (")


def test_wait_says_why_a_request_is_held_back(home: Home) -> None:
    # QA: --wait printed only "provisioning at step resolve-image [9m35s]" while the
    # request waited on an unset secret; the reason was in `machine get` alone.
    home.providers["fake"]["fail_creates"] = True  # CapacityError: retried, not failed
    home.write_config()
    request = home.write_request("held-1")
    result = home.invoke("machine", "create", "-f", str(request), "--wait", "--timeout", "1")
    assert result.exit_code == 1, result.output
    warnings = [line for line in result.output.splitlines()
                if line.startswith("warning: held-1: ")]
    assert len(warnings) == 1, result.output  # once per distinct error
    assert "capacity" in warnings[0].lower()


def test_a_reason_is_told_once_whatever_changes_at_each_attempt() -> None:
    # QA: missing AWS credentials were told 7 times in 40 s, the lines differing only
    # in "(failing since ..., next attempt ...)".
    from talprov.reconcile.instance_health import lasting_part as _lasting_part

    first = ("provider 'aws' unavailable: no AWS credentials found (failing since "
             "2026-12-06T16:00:00Z, next attempt 2026-12-06T16:00:15Z)")
    later = ("provider 'aws' unavailable: no AWS credentials found (failing since "
             "2026-12-06T16:00:00Z, next attempt 2026-12-06T16:00:45Z)")
    assert _lasting_part(first) == _lasting_part(later)
    assert _lasting_part(first) == "provider 'aws' unavailable: no AWS credentials found"
    assert _lasting_part("resolve-image: no bucket (attempt 5, retry in 31s)") == \
        "resolve-image: no bucket"
    assert _lasting_part("a plain reason") == "a plain reason"


@pytest.mark.parametrize("text", ["0008", "1e3", "1e-3", "1.0e3", "+.5", "0o17", "12345e6",
                                  "0x1F", ".inf", "null", "~", "2026-01-02"])
def test_yaml_output_quotes_what_a_yaml_1_2_reader_takes_for_no_string(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Go's yaml.v3 reads these plain scalars as numbers, null or a time; PyYAML
    # (YAML 1.1) wrote several of them plain.
    from talprov.cli.output import emit

    emit({"value": text}, "yaml")
    shown = capsys.readouterr().out
    assert shown.strip() in (f"value: '{text}'", f'value: "{text}"')
    assert yaml.safe_load(shown) == {"value": text}


def test_yaml_output_leaves_plain_what_is_a_string_to_every_reader(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from talprov.cli.output import emit

    emit({"value": "web-1", "version": "v1.13.9", "empty": ""}, "yaml")
    assert capsys.readouterr().out.splitlines() == ["value: web-1", "version: v1.13.9",
                                                    "empty: ''"]


def test_reconcile_once_says_when_the_waiting_requests_are_due(home: Home) -> None:
    # QA: run right after fixing a problem, it said "0 requests worked on" and not
    # that the requests' next attempt was not due yet.
    home.providers["fake"]["fail_creates"] = True
    home.write_config()
    home.invoke("machine", "create", "-f", str(home.write_request("m5")))
    home.invoke("reconcile", "--once")  # the create fails; its retry waits
    home.providers["fake"]["fail_creates"] = False  # the problem is fixed
    home.write_config()
    said = home.invoke("reconcile", "--once").output
    found = re.search(r"round done: 0 requests worked on \([\d.]+s\); 1 waiting for its "
                      r"next attempt, due in (\d+)s \((\S+Z)\)", said)
    assert found, said
    assert int(found.group(1)) > 0
    document = json.loads(home.invoke("reconcile", "--once", "-o", "json").stdout)
    assert document["worked"] == 0
    assert document["waiting"] == 1
    assert document["next_due_at"] == found.group(2)
    assert document["errors"] == []


def test_reconcile_output_needs_once(home: Home) -> None:
    result = home.invoke("reconcile", "-o", "json")
    assert result.exit_code == 2
    assert "--once" in result.stderr

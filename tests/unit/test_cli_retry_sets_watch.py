"""Commands people expect: `machine retry`, `set list|get|scale`, `--watch`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import yaml
from click.testing import Result

from talprov.cli import output
from talprov.providers.types import MachineRequest, Stage
from talprov.sets import RequestSet, SetRepository, reconcile_set, set_fingerprint
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fail(store: Store, request_id: str) -> None:
    record = store.get_request(request_id)
    assert record is not None
    store.save_progress(
        request_id, expected_version=record.version, stage=Stage.FAILED,
        step_index=record.step_index, step_name=record.step_name, state=record.state,
        error="ensure-machine: no capacity", attempts=3, next_attempt_at=None,
        step_started_at=T0, infra_id=record.infra_id, machine_uuid=record.machine_uuid,
        addresses=record.addresses, events=["failed: no capacity"])


def _get(home: Home, request_id: str) -> dict[str, object]:
    result = json.loads(home.invoke("machine", "get", request_id, "-o", "json").output)
    assert isinstance(result, dict)
    return result


def test_machine_retry_resumes_a_failed_request_at_its_step(home: Home) -> None:
    request = home.write_request("r1")
    home.invoke("machine", "create", "-f", str(request))
    home.invoke("reconcile", "--once")
    step = _get(home, "r1")["step"]
    store = Store(home.store_url)
    try:
        _fail(store, "r1")
    finally:
        store.close()
    result = home.invoke("machine", "retry", "r1")
    assert result.exit_code == 0, result.output
    assert f"request r1: pending at step {step}" in result.output
    view = _get(home, "r1")
    assert (view["stage"], view["step"], view["error"]) == ("pending", step, None)
    assert home.invoke("machine", "retry", "r1").exit_code == 0  # idempotent
    for _ in range(5):
        home.invoke("reconcile", "--once")
    assert _get(home, "r1")["stage"] == "provisioned"
    refused = home.invoke("machine", "retry", "r1")
    assert refused.exit_code == 2
    assert "request r1 is provisioned: only a failed request can be retried" in refused.output
    assert home.invoke("machine", "retry", "nope").exit_code == 1


def record_request_set(home: Home, name: str, count: int) -> None:
    """A request set of ``count`` workers on the provider double, members made."""
    store = Store(home.store_url)
    store.migrate()
    try:
        template = MachineRequest(id="unused", provider="fake", talos_version="v1.13.9",
                                  labels={"role": "worker"})
        repo = SetRepository(store)
        reconcile_set(repo, repo.put(RequestSet(name, template, count, False,
                                                set_fingerprint(template, count), T0, T0)))
    finally:
        store.close()


def test_set_list_get_and_scale(home: Home) -> None:
    record_request_set(home, "pool", 2)
    listed = json.loads(home.invoke("set", "list", "-o", "json").output)
    assert [(s["name"], s["machine_count"], len(s["members"])) for s in listed] == [("pool", 2, 2)]
    table = home.invoke("set", "get", "pool").output
    assert "pool-0=pending" in table
    assert "pool-1=pending" in table
    result = home.invoke("set", "scale", "pool", "3")
    assert result.exit_code == 0, result.output
    assert "created pool-2" in result.output
    view = json.loads(home.invoke("set", "get", "pool", "-o", "json").output)
    assert view["machine_count"] == 3
    assert view["created_at"].endswith("Z")
    assert len(view["members"]) == 3
    assert home.invoke("set", "get", "nope").exit_code == 1


def test_set_get_shows_the_last_replaced_failure_readably(home: Home) -> None:
    record_request_set(home, "pool", 1)
    store = Store(home.store_url)
    try:
        _fail(store, "pool-0")
    finally:
        store.close()
    # Any command that reconciles the set replaces the failed member.
    assert home.invoke("set", "scale", "pool", "1").exit_code == 0
    table = home.invoke("set", "get", "pool").output
    line = next(x for x in table.splitlines() if x.startswith("last_failure"))
    assert "member=pool-0" in line
    assert "error=ensure-machine: no capacity" in line
    assert "{" not in line  # not a Python dict's repr
    view = json.loads(home.invoke("set", "get", "pool", "-o", "json").output)
    assert view["last_failure"]["member"] == "pool-0"
    assert view["last_failure"]["replacements"] == 1


def assert_interrupted(result: Result) -> None:
    """Ctrl-C ends a watch as it ends every talprov command: one line, exit 130."""
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().endswith("talprov: interrupted"), result.stderr


def test_watch_prints_a_new_table_only_when_something_changed(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = home.write_request("w1")
    rounds: list[str] = []

    def sleep(seconds: float) -> None:
        rounds.append(f"{seconds}")
        if len(rounds) == 1:
            home.invoke("machine", "create", "-f", str(request))  # a change
        elif len(rounds) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result = home.invoke("machine", "list", "--watch", "2")
    assert_interrupted(result)
    assert rounds == ["2.0", "2.0", "2.0"]
    # Three renders: (none), then w1, then w1 unchanged (not printed again).
    assert result.output.count("--- ") == 2
    assert result.output.count("w1") == 1 + result.output.count("request w1 recorded")


def test_status_watch_redraws_on_a_terminal(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    home.invoke("apply", "-f", str(spec))
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    result = home.invoke("status", "demo", "--watch", "1")
    assert_interrupted(result)
    assert result.output.count("every 1s, ") == 2  # redrawn although nothing changed


@pytest.mark.parametrize("terminal", [False, True])
def test_watch_json_is_one_document_per_line(
    home: Home, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    request = home.write_request("w1", labels={"role": "worker", "rack": "r7"})
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 1:
            home.invoke("machine", "create", "-f", str(request))  # a change
        elif len(rounds) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: terminal)
    result = home.invoke("machine", "list", "--watch", "2", "-o", "json")
    assert_interrupted(result)
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    # Three renders: [], then w1, then w1 unchanged (not printed again).
    assert [[r["id"] for r in doc] for doc in documents] == [[], ["w1"]]
    assert documents[1][0]["labels"] == {"role": "worker", "rack": "r7"}


def test_watch_yaml_is_a_yaml_stream(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    home.invoke("machine", "create", "-f", str(home.write_request("w1")))
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 1:
            home.invoke("machine", "create", "-f", str(home.write_request("w2")))
        elif len(rounds) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result = home.invoke("machine", "list", "--watch", "2", "-o", "yaml")
    assert_interrupted(result)
    documents = list(yaml.safe_load_all(result.stdout))
    assert [[r["id"] for r in doc] for doc in documents] == [["w1"], ["w1", "w2"]]


def test_watch_help_says_json_lines(home: Home) -> None:
    result = home.invoke("machine", "list", "--help")
    assert "JSON Lines" in " ".join(result.output.split())


def test_machine_list_shows_labels_and_drops_the_column_when_none_has_any(home: Home) -> None:
    home.invoke("machine", "create", "-f", str(home.write_request("w1", labels={})))
    bare = home.invoke("machine", "list")
    assert bare.exit_code == 0, bare.output
    assert "labels" not in bare.stdout.splitlines()[0].split()
    home.invoke("machine", "create", "-f",
                str(home.write_request("w2", labels={"role": "worker", "rack": "r7"})))
    labelled = home.invoke("machine", "list")
    header = labelled.stdout.splitlines()[0].split()
    assert "labels" in header
    [row] = [line for line in labelled.stdout.splitlines() if line.startswith("w2 ")]
    assert "rack=r7, role=worker" in row

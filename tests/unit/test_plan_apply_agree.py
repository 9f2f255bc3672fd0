"""`plan` shows what `apply` does (same ids), notes reach the table, destroy asks first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import talprov.cli.app as app_module
from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec


def _ids(home: Home) -> set[str]:
    return {r["id"] for r in json.loads(home.invoke("machine", "list", "-o", "json").output)}


def test_apply_creates_the_ids_plan_showed(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=2)
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    planned = {a["request"] for a in preview["actions"]}
    assert len(planned) == 3
    result = home.invoke("apply", "-f", str(spec), "-o", "json")
    assert result.exit_code == 0, result.output
    assert _ids(home) == planned
    # And again for a scale-up of an existing cluster.
    spec = write_spec(home.root, control_planes=1, workers=4)
    table = home.invoke("plan", "-f", str(spec)).output
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    new = {a["request"] for a in preview["actions"]}
    assert len(new) == 2
    assert all(rid in table for rid in new)
    home.invoke("apply", "-f", str(spec))
    assert _ids(home) == planned | new


def test_plan_table_shows_the_notes_the_json_carries(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    docs = [d for d in yaml.safe_load_all(spec.read_text()) if d["kind"] != "ControlPlane"]
    spec.write_text(yaml.safe_dump_all(docs))
    notes = [n for s in json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
             ["sets"] for n in s["notes"]]
    assert notes
    table = home.invoke("plan", "-f", str(spec)).output
    assert "matches its spec" not in table
    for note in notes:
        assert note in table


def test_destroy_refuses_without_yes_when_not_on_a_terminal(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    home.invoke("apply", "-f", str(spec))
    result = home.invoke("destroy", "demo")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert home.invoke("status", "demo").exit_code == 0  # still recorded, nothing deleted
    assert home.invoke("destroy", "demo", "--yes").exit_code == 0


def test_destroy_asks_on_a_terminal(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    home.invoke("apply", "-f", str(spec))
    monkeypatch.setattr(app_module, "stdin_is_terminal", lambda: True)
    result = home.invoke("destroy", "demo", input="n\n")
    assert result.exit_code == 1
    assert "Delete all 2 machines of cluster demo?" in result.output
    state = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert state["cluster"] == "demo"


def test_plan_shows_every_step_of_a_rolling_update(home: Home) -> None:
    """QA: `plan` showed only the first step of a rolling update (one surge machine
    of three outdated workers), so it read as if one machine would change."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=3, control_planes=1)),
                       "--wait").exit_code == 0
    before = {r["id"]: r for r in json.loads(home.invoke("machine", "list", "-o", "json").output)}
    workers = sorted(i for i, r in before.items() if r["labels"].get("talprov.set") == "workers")
    assert len(workers) == 3
    changed = write_spec(home.root, workers=3, control_planes=1, version="v1.13.8")
    table = home.invoke("plan", "-f", str(changed))
    assert table.exit_code == 0, table.output
    # Every outdated machine is named, with the step that replaces it.
    for request_id in workers:
        assert request_id in table.output, table.output
    assert "step 2" in table.output
    preview = json.loads(home.invoke("plan", "-f", str(changed), "-o", "json").output)
    later = [a for step in preview["later_steps"] for a in step]
    replaced = {a.get("replaces") or a["request"] for a in preview["actions"] + later
                if a["action"] in ("replace", "delete")}
    assert set(workers) <= replaced
    # The first step is still exactly what apply does now.
    assert preview["summary"] == json.loads(
        home.invoke("apply", "-f", str(changed), "-o", "json").output)["summary"]


def _with_domains(path: Path, domains: list[str]) -> Path:
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "MachineClass":
            doc["failureDomains"] = domains
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_plan_deletes_name_the_failure_domain_of_their_machine(home: Home) -> None:
    """QA: `step 2: - delete control-planes demo-control-planes-sh5ro # rolling update:
    outdated` had no "in DOMAIN", neither in the table nor in -o json."""
    domains = ["zone-a", "zone-b", "zone-c"]
    spec = _with_domains(write_spec(home.root, workers=0, control_planes=3), domains)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0
    records = json.loads(home.invoke("machine", "list", "-o", "json").output)
    domain_of = {r["id"]: r["labels"]["talprov.domain"] for r in records}
    assert sorted(domain_of.values()) == domains
    changed = _with_domains(write_spec(home.root, workers=0, control_planes=3,
                                       version="v1.13.8"), domains)
    preview = json.loads(home.invoke("plan", "-f", str(changed), "-o", "json").output)
    actions = preview["actions"] + [a for step in preview["later_steps"] for a in step]
    deletes = [a for a in actions if a["action"] == "delete"]
    assert {a["request"] for a in deletes} == set(domain_of)
    for action in deletes:
        assert action["domain"] == domain_of[action["request"]]
    table = home.invoke("plan", "-f", str(changed)).output
    lines = [line for line in table.splitlines() if " delete " in line]
    assert len(lines) == len(deletes), table
    for line in lines:
        victim = next(rid for rid in domain_of if rid in line)
        assert f"{victim} in {domain_of[victim]}  #" in line, line

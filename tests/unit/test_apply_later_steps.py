"""`apply` and `scale` list the later steps of a change spread over several passes,
as `plan` does, and so does a `plan` while a step's machines are still coming up
(QA: with a control plane of 1 raised to 5, `plan` showed "Then 3 more step(s)",
but `apply -o json` gave `later_steps: []`, `later_steps_complete: true`; a second
`plan` said "no changes" and listed no later step; `scale demo control-planes 3`
printed only "1 to create")."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec


def _steps(document: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Each later step's actions as (action, set)."""
    return [[(a["action"], a["set"]) for a in step] for step in document["later_steps"]]


def _one_control_plane(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=1)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0


CREATE_ONE_CP = [("create", "control-planes")]


def test_apply_lists_the_later_steps_plan_listed(home: Home) -> None:
    _one_control_plane(home)
    spec = write_spec(home.root, control_planes=5, workers=1)
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").stdout)
    assert preview["summary"]["create"] == 1
    assert _steps(preview) == [CREATE_ONE_CP] * 3
    assert preview["later_steps_complete"] is True
    applied = home.invoke("apply", "-f", str(spec), "-o", "json")
    assert applied.exit_code == 0, applied.output
    document = json.loads(applied.output)
    assert set(document) == set(preview)  # the same keys
    assert document["summary"] == preview["summary"]
    assert _steps(document) == _steps(preview)
    assert document["later_steps_complete"] is True
    table = home.invoke("apply", "-f", str(spec))
    assert "Then 3 more step(s)" in table.output, table.output


def test_plan_while_a_step_waits_lists_the_steps_after_it(home: Home) -> None:
    _one_control_plane(home)
    spec = write_spec(home.root, control_planes=5, workers=1)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    # No reconcile ran: the new member is not up yet, so this pass creates nothing.
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").stdout)
    assert preview["actions"] == []
    assert any("waits" in n for s in preview["sets"] for n in s["notes"]), preview["sets"]
    assert _steps(preview) == [CREATE_ONE_CP] * 3
    assert preview["later_steps_complete"] is True
    table = home.invoke("plan", "-f", str(spec)).output
    assert "no changes" in table
    assert "Then 3 more step(s)" in table, table


def test_scale_lists_the_later_steps(home: Home) -> None:
    _one_control_plane(home)
    table = home.invoke("scale", "demo", "control-planes", "3")
    assert table.exit_code == 0, table.output
    assert "Plan: 1 to create" in table.output
    assert "Then 1 more step(s)" in table.output, table.output
    document = json.loads(home.invoke("scale", "demo", "control-planes", "4", "-o",
                                      "json").stdout)
    # 1 member up, 1 coming: 2 to add, one at a time, the first once that one is up.
    assert document["actions"] == []
    assert _steps(document) == [CREATE_ONE_CP] * 2
    # Workers are all made in this pass; the control plane's steps are still to come.
    workers = json.loads(home.invoke("scale", "demo", "workers", "3", "-o", "json").stdout)
    assert workers["summary"]["create"] == 2
    assert _steps(workers) == [CREATE_ONE_CP] * 2
    assert workers["later_steps_complete"] is True

"""A plan without actions says the cluster matches its spec only when it does.

QA: `apply` printed "no changes; the cluster matches its spec" while every
machine of the cluster was still provisioning.
"""

from __future__ import annotations

import pytest

from talprov.cli.planview import show_plan
from talprov.scaler.actions import Plan, SetStatus


def _set(*, provisioned: int, provisioning: int = 0, deleting: int = 0,
         notes: tuple[str, ...] = ()) -> SetStatus:
    return SetStatus(name="workers", role="worker", desired=2, provisioned=provisioned,
                     provisioning=provisioning, failed=0, outdated=0, deleting=deleting,
                     unhealthy=0, notes=notes)


def _first_line(plan: Plan, capsys: pytest.CaptureFixture[str]) -> str:
    show_plan(plan, "table")
    return capsys.readouterr().out.splitlines()[0]


def test_machines_still_being_made_are_said_instead_of_a_match(
        capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan("web", (), (_set(provisioned=0, provisioning=2),))

    assert _first_line(plan, capsys) == "web: no changes to plan; 2 machines still being made."


def test_machines_being_deleted_are_said_too(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan("web", (), (_set(provisioned=1, provisioning=1, deleting=1),))

    assert _first_line(plan, capsys) == ("web: no changes to plan; 1 machine still being "
                                         "made and 1 machine being deleted.")


def test_a_settled_cluster_matches_its_spec(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan("web", (), (_set(provisioned=2),))

    assert _first_line(plan, capsys) == "web: no changes; the cluster matches its spec."


def test_a_note_keeps_the_line_short(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan("web", (), (_set(provisioned=1, provisioning=1, notes=("held back",)),))

    assert _first_line(plan, capsys) == "web: no changes."

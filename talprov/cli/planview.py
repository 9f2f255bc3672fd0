"""How a cluster's plan is shown: the table a person reads and the document
``-o json|yaml`` prints, for ``plan``, ``apply`` and ``status``. Pure rendering:
nothing here reads a store or asks a cloud."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from talprov.cli.output import emit
from talprov.scaler.actions import Action, Plan
from talprov.words import counted

#: Later steps' actions shown in a table before "… and N more".
SHOWN_LATER_ACTIONS = 20


def plan_view(result: Plan, later: Sequence[Plan] = (), complete: bool = True
              ) -> dict[str, Any]:
    """What `plan` and `apply` print with -o json|yaml: the plan's keys and the
    later steps' actions. Pure."""
    return {**result.to_dict(),
            "later_steps": [[a.to_dict() for a in step.actions] for step in later],
            "later_steps_complete": complete}


def show_plan(result: Plan, output: str, later: Sequence[Plan] = (),
               complete: bool = True) -> None:
    """Print ``result`` (and the later steps) as ``output``: table, json or yaml."""
    if output != "table":
        emit(plan_view(result, later, complete), output)
        return
    notes = [f"{s.name}: {note}" for s in result.sets for note in s.notes]
    notes += [f"orphan {o.infra_id} ({o.provider}): {o.decision}" for o in result.orphans
              if o.decision != "delete"]
    if not result.actions:
        click.echo(f"{result.cluster}: no changes{_no_changes_tail(result, bool(notes))}")
    for action in result.actions:
        click.echo(_action_line(action))
    summary = result.summary
    click.echo(f"Plan: {summary['create']} to create, {summary['replace']} to replace, "
               f"{summary['delete']} to delete.")
    _show_later_steps(later, complete)
    for note in notes:
        click.echo(f"Note: {note}")


def _no_changes_tail(result: Plan, noted: bool) -> str:
    """What follows "no changes" in a plan without actions: that the cluster
    matches its spec only when nothing is held back (a note says what is) and
    nothing is still being made or deleted (QA: it said so while every machine
    was still provisioning). Pure."""
    if noted:
        return "."
    making = sum(s.provisioning for s in result.sets)
    deleting = sum(s.deleting for s in result.sets)
    if making or deleting:
        busy = [f"{counted(making, 'machine')} still being made"] if making else []
        busy += [f"{counted(deleting, 'machine')} being deleted"] if deleting else []
        return f" to plan; {' and '.join(busy)}."
    return "; the cluster matches its spec."


def _action_line(action: Action, indent: str = "  ") -> str:
    sign = {"create": "+", "delete": "-", "replace": "~"}[action.action.value]
    extra = f" (replaces {action.replaces})" if action.replaces else ""
    if action.domain:
        extra += f" in {action.domain}"
    return (f"{indent}{sign} {action.action.value:7} {action.set:16} {action.request}{extra}"
            f"  # {action.reason}")


def _show_later_steps(later: Sequence[Plan], complete: bool) -> None:
    """The passes after this one, each once the previous one's machines are ready:
    the first :data:`SHOWN_LATER_ACTIONS` actions, then how many more."""
    if not later:
        return
    total = sum(len(step.actions) for step in later)
    click.echo(f"Then {len(later)} more step(s), each once the previous step's machines "
               f"are ready ({total} action(s); ids of new machines are provisional):")
    shown = 0
    for number, step in enumerate(later, start=2):
        for action in step.actions:
            if shown == SHOWN_LATER_ACTIONS:
                click.echo(f"  … and {total - shown} more")
                break
            click.echo(_action_line(action, indent=f"  step {number}: "))
            shown += 1
        else:
            continue
        break
    if not complete:
        click.echo("  (cut off: the change had not settled after "
                   f"{len(later) + 1} steps; see the notes)")


def status_view(result: Plan, state: str) -> dict[str, Any]:
    """What `status NAME` prints with -o json|yaml: the cluster, its ``state``
    (recorded, destroying, or destroyed once a watch saw it go) and its sets. Pure."""
    return {"cluster": result.cluster, "state": state,
            "sets": [s.to_dict() for s in result.sets]}

"""COUNT, the size a command sets a machine set to: parsing it (a negative count
included), its limits, and the questions asked before a large growth, a
control plane's shrink or the removal of a worker set (through
:func:`talprov.cli.app.confirm_or_exit`)."""

from __future__ import annotations

import re
from typing import Any

import click

from talprov.cli.app import confirm_or_exit, fail
from talprov.scaler.models import CONTROL_PLANE_SET, MAX_SET_SIZE, ClusterSpec
from talprov.scaler.setplan import tolerated_failures
from talprov.words import counted

#: Machines one command may add without asking (a typo's extra zero must not
#: launch thousands of instances on a real account).
LARGE_GROWTH = 50


_NEGATIVE_NUMBER = re.compile(r"-\d+")


class CountCommand(click.Command):
    """A command with a COUNT argument, where ``-1`` is a negative count (click
    would read it as an unknown option and say "No such option: -1")."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        negative = next((arg for arg in args if _NEGATIVE_NUMBER.fullmatch(arg)), None)
        if negative is not None and not ctx.resilient_parsing:  # not while completing
            checked_count(int(negative))
        return super().parse_args(ctx, args)


class CountType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """COUNT, a set's size: anything but a whole number is one line naming COUNT
    (exit 2), as a negative or too large count is (QA: click's usage block)."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            message = (f"must be a whole number of machines (0..{MAX_SET_SIZE}), "
                       f"got {value!r}")
            if ctx is not None and ctx.resilient_parsing:
                self.fail(message, param, ctx)  # completing: click ignores it
            fail(f"COUNT: {message}")


def checked_count(count: int) -> int:
    """``count`` when it is a set's size that may be recorded: 0..MAX_SET_SIZE.

    Exits 2 with one line naming COUNT otherwise (the same limit for a cluster's
    set, a request set and the API). Pure."""
    if count < 0:
        fail(f"COUNT: count must be 0 or more, got {count}")
    if count > MAX_SET_SIZE:
        fail(f"COUNT: at most {MAX_SET_SIZE} machines per set (the API's limit), got {count}")
    return count


def confirm_size_change(what: str, current: int, count: int, yes: bool) -> None:
    """Ask (see :func:`confirm_or_exit`) before ``what`` grows by more than
    :data:`LARGE_GROWTH` machines."""
    if count - current > LARGE_GROWTH:
        added = counted(count - current, "machine")
        confirm_or_exit(f"Add {added} to {what} ({current} -> {count})?", yes)


def confirm_control_plane_shrink(what: str, current: int, count: int, yes: bool) -> None:
    """Ask (see :func:`confirm_or_exit`) before the control plane ``what`` shrinks:
    each machine removed is an etcd member removed (see :func:`etcd_shrink_effect`)."""
    if count >= current:
        return
    confirm_or_exit(
        f"Shrink the control plane {what} ({current} -> {count}); "
        f"{etcd_shrink_effect(current, count)}?", yes)


def confirm_removed_sets(recorded: ClusterSpec, spec: ClusterSpec, yes: bool) -> None:
    """Ask (see :func:`confirm_or_exit`) before ``spec`` leaves out a worker set
    that ``recorded`` has machines in: the pass deletes them all at once, without
    the set's ``update`` bounds, and a renamed set is a new one whose machines are
    made anew (QA: a rename in a spec deleted every machine of the set, unasked).
    A left-out ControlPlane keeps its machines, so it is not asked about."""
    removed = [(name, machine_set.size) for name, machine_set in recorded.sets.items()
               if name not in spec.sets and name != CONTROL_PLANE_SET and machine_set.size]
    if not removed:
        return
    named = ", ".join(f"{name} ({counted(size, 'machine')})" for name, size in removed)
    sets = "set" if len(removed) == 1 else "sets"
    confirm_or_exit(f"Remove the {sets} {named} of cluster {spec.name}, which this spec "
                    f"leaves out, deleting all {'its' if len(removed) == 1 else 'their'} "
                    "machines at once (a renamed set is a new set)?", yes)


def etcd_shrink_effect(current: int, count: int) -> str:
    """What shrinking etcd from ``current`` to ``count`` members does to the number
    of member failures it survives (:func:`tolerated_failures`: 2 members tolerate
    no more than 1 does). Pure."""

    def failures(members: int) -> str:
        tolerated = tolerated_failures(members)
        if tolerated == 0:
            return "no member failure"
        return f"{tolerated} member failure{'s' if tolerated > 1 else ''}"

    before, after = tolerated_failures(current), tolerated_failures(count)
    if before == after:
        return f"etcd tolerates {failures(count)}, before and after"
    return f"etcd will tolerate {failures(count)} (it tolerated {before})"

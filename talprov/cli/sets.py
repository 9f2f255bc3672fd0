"""``talprov set list|get|scale|delete``: the service's request sets, from the command line."""

from __future__ import annotations

from collections.abc import Sequence

import click

from talprov.cli.app import (
    EXIT_FAILED,
    App,
    carried_on_by,
    confirm_or_exit,
    fail,
    handle_errors,
    pass_app,
    say,
)
from talprov.cli.counts import (
    LARGE_GROWTH,
    CountCommand,
    CountType,
    checked_count,
    confirm_size_change,
)
from talprov.cli.machine import show_warnings
from talprov.cli.numbers import WAIT_SECONDS
from talprov.cli.output import emit, output_option
from talprov.cli.waiting import WAIT_TIMEOUT_HELP, WaitProgress, interruptible
from talprov.processes import abandon_after
from talprov.sets import RequestSet, SetRepository, reconcile_set
from talprov.store.records import RequestRecord
from talprov.words import counted

LIST_COLUMNS = ("name", "provider", "machine_count", "members", "talos_version", "deleting")


@click.group("set")
def request_set() -> None:
    """Request sets: N identical requests `<set>-<n>` (the API's machine-request-sets).

    \b
    Examples:
      talprov set list
      talprov set get pool
      talprov set scale pool 3
    """


def _found(repo: SetRepository, name: str) -> RequestSet:
    found = repo.get(name)
    if found is None:
        fail(f"request set {name} not found", EXIT_FAILED)
    return found


def _members_line(members: list[RequestRecord]) -> str:
    return ", ".join(f"{m.request.id}={m.stage.value}" for m in members)


@request_set.command("list")
@output_option
@pass_app
@handle_errors
def list_sets(app: App, output: str) -> None:
    """List request sets with their size and members' stages.

    \b
    Examples:
      talprov set list
      talprov set list -o json
    """
    repo = SetRepository(app.store)
    views = [s.public_view(repo.members(s)) for s in repo.all()]
    if output != "table":
        emit(views, output)
        return
    emit([{**v, "members": len(v["members"])} for v in views], output, columns=LIST_COLUMNS)


@request_set.command("get")
@click.argument("name")
@output_option
@pass_app
@handle_errors
def get_set(app: App, name: str, output: str) -> None:
    """Show one request set and its members. Exit 1 when unknown.

    \b
    Examples:
      talprov set get pool
      talprov set get pool -o yaml
    """
    repo = SetRepository(app.store)
    found = _found(repo, name)
    members = repo.members(found)
    view = found.public_view(members)
    if output != "table":
        emit(view, output)
        return
    emit([{"field": key, "value": _members_line(members) if key == "members" else value}
          for key, value in view.items()], output, columns=("field", "value"))


@request_set.command("scale", cls=CountCommand)
@click.argument("name")
@click.argument("count", type=CountType())
@click.option("--yes", "-y", is_flag=True, default=False,
              help=f"Do not ask before adding more than {LARGE_GROWTH} machines (required "
                   "then when stdin is not a terminal).")
@output_option
@pass_app
@handle_errors
def scale_set(app: App, name: str, count: int, yes: bool, output: str) -> None:
    """Change a set's machine_count (at most 1000, as the API allows); the member
    requests are recorded or marked for deletion at once (scale-down: those
    `machine mark-delete` marked first, then unallocated ones, workers before
    control planes, oldest first), and `talprov reconcile`
    (or a running `talprov serve`) makes and removes the machines. Exit 1 when the
    set is unknown. With -o json|yaml, prints the set as `set get` shows it plus
    the members this recorded ("created") and marked for deletion ("deleted").

    \b
    Examples:
      talprov set scale pool 3
      talprov set scale pool 0 --yes -o json
    """
    checked_count(count)
    repo = SetRepository(app.store)
    found = _found(repo, name)
    confirm_size_change(f"request set {name}", found.machine_count, count, yes)
    stored = repo.put(found.scaled(count, app.runtime_now()))
    changes = reconcile_set(repo, stored, now=app.runtime_now())
    done = [f"created {_some(changes.created)}"] if changes.created else []
    done += [f"deleting {_some(changes.deleted)}"] if changes.deleted else []
    say(f"request set {name}: size {count}" + (f"; {'; '.join(done)}" if done else "")
        + f"; {carried_on_by()}")
    if output != "table":
        emit({**stored.public_view(repo.members(stored)), "created": list(changes.created),
              "deleted": list(changes.deleted)}, output)


@request_set.command("delete")
@click.argument("name")
@click.option("--wait/--no-wait", default=False,
              help="Run until every member is gone and the set with them.")
@click.option("--timeout", default=1800.0, show_default=True, type=WAIT_SECONDS,
              help=WAIT_TIMEOUT_HELP)
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask; required when stdin is not a terminal (scripts).")
@output_option
@pass_app
@handle_errors
def delete_set(app: App, name: str, wait: bool, timeout: float, yes: bool,
               output: str) -> None:
    """Delete a request set: every member is deleted, and the set disappears once
    they are all gone (the API's DELETE /v1/machine-request-sets/NAME). Idempotent:
    a set being deleted already is deleted on.

    Asks first on a terminal; scripts pass --yes (without it, exit 2). Without
    --wait, `talprov reconcile` (or a running `talprov serve`) removes the
    machines. Exit 1 when the set is unknown, or still has members after
    --timeout. With -o json|yaml, prints the set as `set get` shows it, its
    "state" (deleting, or deleted after --wait) and the members this marked for
    deletion ("deleted").

    \b
    Example:
      talprov set delete pool --wait --yes
    """
    repo = SetRepository(app.store)
    found = _found(repo, name)
    confirm_or_exit(f"Delete all {counted(len(repo.members(found)), 'machine')} of request "
                    f"set {name}?", yes)
    stored = repo.put(found.for_deletion(app.runtime_now()))
    changes = reconcile_set(repo, stored, now=app.runtime_now())
    view = stored.public_view(repo.members(stored))
    gone = changes.removed_set or (wait and _wait_deleted(app, repo, stored, timeout))
    if gone:
        say(f"request set {name}: deleted")
    else:
        doing = f"deleting {_some(changes.deleted)}" if changes.deleted else "deleting"
        say(f"request set {name}: {doing}; {carried_on_by()}")
    if output != "table":
        emit({**view, "state": "deleted" if gone else "deleting",
              "deleted": list(changes.deleted)}, output)
    if wait and not gone:
        fail(f"request set {name}: members still being removed after {timeout:.0f}s",
             EXIT_FAILED)


def _wait_deleted(app: App, repo: SetRepository, request_set: RequestSet,
                  timeout: float) -> bool:
    """Run the run loop here until ``request_set`` and its members are gone;
    False after ``timeout`` seconds."""
    progress = WaitProgress(app.runtime.clock)
    name = request_set.name

    def gone() -> bool:
        left = len(repo.members(request_set))
        progress.show(f"request set {name}: deleting, {counted(left, 'member')} left")
        return repo.get(name) is None

    with interruptible(f"the deletion of request set {name}"), app.run_loop(
            used={request_set.instance}) as loop, progress.ticking():
        left = max(0.0, timeout - progress.elapsed())
        return abandon_after(left, lambda: loop.run_until(
            gone, timeout=left, interval=2.0, on_round=show_warnings), otherwise=False)


def _some(names: Sequence[str], shown: int = 5) -> str:
    """``names`` for one line: all of a few, else a count and the first ones."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{len(names)} members ({', '.join(names[:shown])}, ...)"

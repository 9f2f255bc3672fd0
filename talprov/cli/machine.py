"""``talprov machine …`` and ``talprov reconcile``: requests in, machines out."""

from __future__ import annotations

import logging
import math
import sys
from datetime import datetime
from pathlib import Path

import click

from talprov.cli.app import (
    EXIT_FAILED,
    App,
    UnknownName,
    carried_on_by,
    fail,
    handle_errors,
    known_instance,
    pass_app,
    say,
)
from talprov.cli.numbers import RECONCILE_INTERVAL, WAIT_SECONDS
from talprov.cli.output import emit, output_option, watch, watch_option
from talprov.cli.waiting import WAIT_TIMEOUT_HELP, WaitProgress, interruptible
from talprov.errors import ConfigError, did_you_mean, file_label
from talprov.processes import abandon_after
from talprov.providers.types import Stage
from talprov.reconcile.instance_health import lasting_part
from talprov.reconcile.reconciler import PassReport
from talprov.reconcile.retry import retry_failed
from talprov.registry import check_request, validate_provider_data
from talprov.requestfile import load_request_file
from talprov.runloop import RoundReport
from talprov.store.records import RequestRecord, forgotten_leaves, public_view
from talprov.timestamps import rfc3339
from talprov.words import counted

LIST_COLUMNS = ("id", "provider", "stage", "step", "infra_id", "machine_uuid", "labels",
                "error")


@click.group()
def machine() -> None:
    """Create, inspect and delete single machines (MachineRequests)."""


def _wait_for(app: App, request_id: str, target: tuple[Stage, ...], timeout: float) -> Stage:
    # The wait starts now, before the providers are built (an SDK may spend
    # seconds finding credentials): its lines count from here and --timeout bounds
    # it all (QA: lines said [0m01s] seconds into the wait, which took 25 s of 15).
    progress = WaitProgress(app.runtime.clock)
    record = app.store.get_request(request_id)
    # Only the request's instance is this command's business: another instance's
    # unset reference is not its warning.
    reconciler = app.reconciler(used={record.request.provider} if record else ())
    told: set[str] = set()

    def settled() -> bool:
        record = app.store.get_request(request_id)
        if record is None:
            return True
        step = f" at step {record.step_name}" if record.step_name else ""
        progress.show(f"{request_id}: {record.stage.value}{step}", request_id=request_id)
        reason = lasting_part(record.error or "")
        if reason and reason not in told and record.stage != Stage.FAILED:
            # Why it is held back (an unset secret, a listing that fails), once per
            # reason: the progress line alone said nothing for minutes (QA). Stored
            # errors are redacted, as `machine get` shows them.
            told.add(reason)
            say(f"warning: {request_id}: {reason}", level=logging.WARNING,
                request_id=request_id)
        return record.stage in target or record.stage == Stage.FAILED

    def show_errors(report: PassReport) -> None:
        for error in report.errors:
            reason = lasting_part(error)
            if reason not in told:
                told.add(reason)
                say(f"warning: {error}", level=logging.WARNING)

    left = max(0.0, timeout - progress.elapsed())
    with interruptible(f"request {request_id}"), progress.ticking():
        # A pass still running at the deadline is broken off there (see abandon_after).
        abandon_after(left, lambda: reconciler.run_until(
            settled, timeout=left, interval=5.0, only={request_id}, on_pass=show_errors),
            otherwise=False)
    record = app.store.get_request(request_id)
    if record is None:
        return Stage.GONE
    if record.stage not in target and record.stage != Stage.FAILED:
        fail(f"{request_id}: still {record.stage.value} after {timeout:.0f}s", EXIT_FAILED)
    return record.stage


@machine.command("create")
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path),
              help="Request file (YAML); - reads it from stdin, its relative file: "
                   "references then from the current directory.")
@click.option("--wait/--no-wait", default=False,
              help="Run the reconciler here until the request is provisioned or failed.")
@click.option("--timeout", default=1800.0, show_default=True, type=WAIT_SECONDS,
              help=WAIT_TIMEOUT_HELP)
@output_option
@pass_app
@handle_errors
def create(app: App, path: Path, wait: bool, timeout: float, output: str) -> None:
    """Record a MachineRequest from a request file.

    Without --wait this returns at once and `talprov reconcile` (or `talprov
    serve`) does the work; the request is stored first, so a crash of either
    loses nothing. Exit 0 when recorded (or provisioned with --wait), 1 when it
    failed, 2 for invalid input.

    \b
    Examples:
      talprov machine create -f web-1.yaml
      talprov machine create -f web-1.yaml --wait --timeout 900
      cat web-1.yaml | talprov machine create -f -
    """
    request = load_request_file(path)
    where = file_label(path)
    instance = known_instance(app, request.provider, where=f"{where}: provider")
    validate_provider_data(app.provider(instance), request.provider_data,
                           where=f"{where}: provider_data")
    check_request(app.provider(instance), request, where=where)
    record = app.store.create_request(request)
    say(f"request {record.request.id} recorded ({record.stage.value})",
        request_id=record.request.id)
    if wait:
        stage = _wait_for(app, record.request.id, (Stage.PROVISIONED,), timeout)
        record = app.store.get_request(record.request.id) or record
        emit(public_view(record), output, columns=LIST_COLUMNS)
        if stage != Stage.PROVISIONED:
            sys.exit(EXIT_FAILED)
        return
    emit(public_view(record), output, columns=LIST_COLUMNS)


@machine.command("list")
@click.option("--provider", "instance", help="Only requests for this provider instance.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE label filter (repeatable).")
@click.option("--all", "include_gone", is_flag=True, help="Include requests that are gone.")
@output_option
@watch_option
@pass_app
@handle_errors
def list_(app: App, instance: str | None, labels: tuple[str, ...], include_gone: bool,
          output: str, watch_seconds: float | None) -> None:
    """List requests with their stage, machine and last error."""
    selector: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--label", f"expected KEY=VALUE, got {item!r}")
        selector[key] = value
    if (instance is not None and instance not in app.config.config.providers
            and not app.store.request_ids(instance, include_gone=True)):
        # An instance removed from the config still lists the requests it left.
        configured = list(app.config.config.providers)
        known = ", ".join(sorted(configured)) or "none"
        raise UnknownName("--provider", f"no provider instance {instance!r} is configured "
                                        f"or has requests (configured: {known})"
                                        + did_you_mean(instance, configured))

    def render() -> None:
        records = app.store.list_requests(provider=instance, labels=selector or None,
                                          include_gone=include_gone)
        emit([public_view(r) for r in records], output, columns=LIST_COLUMNS)

    watch(render, watch_seconds, fmt=output)


@machine.command("get")
@click.argument("request_id")
@click.option("--events/--no-events", default=True, help="Show the event log (table output).")
@output_option
@pass_app
@handle_errors
def get(app: App, request_id: str, events: bool, output: str) -> None:
    """Show one request, its machine and its event log. Exit 1 when unknown."""
    record = app.store.get_request(request_id)
    if record is None:
        fail(f"request {request_id} not found", EXIT_FAILED)
    view = public_view(record)
    log = [{"at": rfc3339(e.at), "message": e.message} for e in app.store.events(request_id)]
    if output != "table":
        view["events"] = log
        emit(view, output)
        return
    # One field a line: every field fits, addresses and labels included.
    emit([{"field": key, "value": value} for key, value in view.items()], output,
         columns=("field", "value"))
    if events:
        emit(log, output, columns=("at", "message"), title="events")


@machine.command("delete")
@click.argument("request_id")
@click.option("--wait/--no-wait", default=False, help="Run the reconciler until it is gone.")
@click.option("--timeout", default=900.0, show_default=True, type=WAIT_SECONDS,
              help=WAIT_TIMEOUT_HELP)
@output_option
@pass_app
@handle_errors
def delete(app: App, request_id: str, wait: bool, timeout: float, output: str) -> None:
    """Ask for a request's machine to be removed (idempotent).

    With -o json|yaml, prints the request as `machine get` shows it (after the
    wait, with --wait)."""
    try:
        record = app.store.request_deletion(request_id)
    except KeyError:
        fail(f"request {request_id} not found", EXIT_FAILED)
    say(f"request {request_id}: {record.stage.value}", request_id=request_id)
    if wait and record.stage != Stage.GONE:
        stage = _wait_for(app, request_id, (Stage.GONE,), timeout)
        _emit_request(app, record, output)
        if stage != Stage.GONE:
            sys.exit(EXIT_FAILED)
        return
    _emit_request(app, record, output)


def _emit_request(app: App, record: RequestRecord, output: str) -> None:
    """For -o json|yaml, the request as it is stored now (``record`` when it is no
    longer stored): the keys of `machine get` without its events. A table says
    nothing more than the status line on stderr already said."""
    if output != "table":
        emit(public_view(app.store.get_request(record.request.id) or record), output)


@machine.command("mark-delete")
@click.argument("request_id")
@click.option("--undo", is_flag=True, help="Remove the mark.")
@pass_app
@handle_errors
def mark_delete(app: App, request_id: str, undo: bool) -> None:
    """Mark a machine as the scaler's first choice when its set scales down."""
    try:
        app.store.mark_for_deletion(request_id, not undo)
    except KeyError:
        fail(f"request {request_id} not found", EXIT_FAILED)
    say(f"request {request_id}: " + ("no longer marked for deletion" if undo else
                                     "marked; its set removes it first when it scales down"),
        request_id=request_id)


@machine.command("forget")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.option("--actor", default="cli", show_default=True, help="Who (recorded).")
@pass_app
@handle_errors
def forget(app: App, request_id: str, reason: str, actor: str) -> None:
    """Remove a request from the store WITHOUT calling its provider.

    The escape hatch for a provider that is gone for good; any machine it had is
    left where it is (a bare-metal machine stays held, not wiped, until
    `talprov baremetal release NAME`).
    """
    record = app.store.get_request(request_id)
    if record is None:
        fail(f"request {request_id} not found", EXIT_FAILED)
    app.store.forget_request(request_id, actor=actor, reason=reason)
    say(f"request {request_id}: forgotten (audited as {actor}: {reason}); "
        f"{_left_behind(app, record)}", request_id=request_id)


def _left_behind(app: App, record: RequestRecord) -> str:
    """What a forgotten request leaves, in words (see :func:`forgotten_leaves`)."""
    block = app.config.config.providers.get(record.request.provider)
    return forgotten_leaves(record, None if block is None else block.type)


@machine.command("retry")
@click.argument("request_id")
@output_option
@pass_app
@handle_errors
def retry(app: App, request_id: str, output: str) -> None:
    """Put a failed request back to work at the step it failed in (idempotent).

    Its error and attempt count are cleared; `talprov reconcile` (or `talprov
    serve`) carries it on. A pending request (one retried already) is left as it is;
    exit 2 for any other stage. With -o json|yaml, prints the request as `machine
    get` shows it.
    """
    try:
        record = retry_failed(app.store, request_id, app.runtime_now())
    except KeyError:
        fail(f"request {request_id} not found", EXIT_FAILED)
    step = f" at step {record.step_name}" if record.step_name else ""
    say(f"request {request_id}: pending{step}; {carried_on_by()}", request_id=request_id)
    _emit_request(app, record, output)


@click.command()
@click.option("--once", is_flag=True, help="Run a single round and exit.")
@click.option("--interval", default=5.0, show_default=True, type=RECONCILE_INTERVAL,
              help="Longest wait between rounds, in seconds "
                   f"({RECONCILE_INTERVAL.range_text()}, as service.reconcile_interval); "
                   "a round starts sooner when a request is due.")
@output_option
@pass_app
@handle_errors
def reconcile(app: App, once: bool, interval: float, output: str) -> None:
    """Drive every request set, recorded cluster and request towards its desired state.

    Each round reconciles the request sets, runs every cluster's scaler pass and
    one reconcile pass, exactly as `talprov serve`'s worker does; then it waits
    until the next request is due. With --once, one round; otherwise rounds until
    interrupted. With --once: exit 1 if the round itself reported errors (an
    instance that cannot be listed, an unreadable store, a set or cluster pass
    that failed); a request that fails is an outcome, not a round error:
    `machine list` and `machine get` show it. The round's line says how many
    requests wait for a next attempt that is not due yet (a step's retry, an
    instance's backoff) and when the first is due, and how many requests it took
    over from a stopped talprov of this host; with --once -o json|yaml, the round
    as a document (worked, waiting, next_due_at, taken_over, errors, seconds).

    \b
    Examples:
      talprov reconcile
      talprov reconcile --once
      talprov reconcile --once -o json
    """
    if output != "table" and not once:
        raise ConfigError("-o", f"-o {output} prints one round: it needs --once")
    with app.run_loop() as loop:
        if once:
            report = loop.run_round()
            show_warnings(report)
            waiting, next_due = loop.reconciler.not_yet_due()
            say(round_summary(report, waiting, next_due, app.runtime_now()))
            if output != "table":
                emit(round_view(report, waiting, next_due), output)
            sys.exit(EXIT_FAILED if report.failed else 0)
        loop.run_forever(interval=interval, on_round=show_warnings)


def round_summary(report: RoundReport, waiting: int, next_due: datetime | None,
                  now: datetime) -> str:
    """One line saying what a round did (``reconcile --once``) and, when requests
    wait for a next attempt not due yet, how many and when the first is due."""
    worked = report.reconcile.worked if report.reconcile is not None else 0
    errors = f", {counted(len(report.errors), 'error')}" if report.errors else ""
    line = f"round done: {counted(worked, 'request')} worked on{errors} ({report.seconds:.1f}s)"
    taken = report.reconcile.taken_over if report.reconcile is not None else 0
    if taken:
        line += (f"; took over {counted(taken, 'request')} whose lease a stopped talprov "
                 "of this host held")
    if waiting and next_due is not None:
        their = "its" if waiting == 1 else "their"
        due_in = max(0, math.ceil((next_due - now).total_seconds()))
        line += (f"; {waiting} waiting for {their} next attempt, due in {due_in}s "
                 f"({rfc3339(next_due.replace(microsecond=0))})")
    return line


def round_view(report: RoundReport, waiting: int, next_due: datetime | None) -> dict[str, object]:
    """``reconcile --once -o json|yaml``: the round's counts, its errors (redacted)
    and when the first waiting request is due (null when none waits)."""
    return {"worked": report.reconcile.worked if report.reconcile is not None else 0,
            "waiting": waiting,
            "next_due_at": rfc3339(next_due.replace(microsecond=0)) if next_due else None,
            "taken_over": report.reconcile.taken_over if report.reconcile is not None else 0,
            "errors": list(report.errors), "seconds": round(report.seconds, 3)}


def show_warnings(report: RoundReport) -> None:
    """Print a round's errors (already redacted) as warnings on stderr."""
    for error in report.errors:
        say(f"warning: {error}", level=logging.WARNING)

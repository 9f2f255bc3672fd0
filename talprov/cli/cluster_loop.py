"""How a cluster command reads and waits for its cluster: the scaler over every
instance it can build (:func:`scaler_for`, warning only about the instances the
cluster uses), and the run loop run here by ``apply --wait`` (:func:`converge`,
each set's progress and each failure said once) and ``destroy --wait``
(:func:`wait_destroyed`). ``talprov demo`` waits the same way."""

from __future__ import annotations

import logging

from talprov.cli.app import App, say
from talprov.cli.machine import show_warnings
from talprov.cli.waiting import WaitProgress, interruptible
from talprov.processes import abandon_after
from talprov.providers.labels import LABEL_CLUSTER
from talprov.providers.types import Stage
from talprov.reconcile.work import STAGE_LOGGER
from talprov.scaler.actions import Plan
from talprov.scaler.apply import Scaler, plan_converged
from talprov.words import counted


def scaler_for(app: App, cluster: str | None = None) -> Scaler:
    """A scaler over every instance that can be built. An unusable instance is
    said only when cluster ``cluster`` uses it (:func:`instances_of`): a spec's
    instances are the only ones a cluster command resolves references for."""
    scaler = Scaler(app.store, app.all_handles(used=()), app.runtime, listings=app.listings())
    if cluster is not None:
        app.all_handles(used=instances_of(scaler, cluster))
    return scaler


def instances_of(scaler: Scaler, cluster: str) -> set[str]:
    """The provider instances cluster ``cluster`` uses: its recorded spec's machine
    classes' and its requests' (an instance the spec no longer names still has
    machines to delete). Empty when it is not recorded."""
    state = scaler.recorded_state(cluster)
    used = {record.request.provider for record in scaler.records(cluster)}
    if state is not None and state.unreadable is None:
        used |= {c.provider for c in state.spec.machine_classes.values()}
    return used


def sets_progress(view: Plan) -> str:
    """Each set of ``view``: provisioned/desired, and what else its machines are. Pure."""
    return "  ".join(f"{s.name} {s.provisioned}/{s.desired}"
                     + (f" (+{s.provisioning})" if s.provisioning else "")
                     + (f" failed={s.failed}" if s.failed else "")
                     + (f" unreadable={s.unreadable}" if s.unreadable else "")
                     + (f" outdated={s.outdated}" if s.outdated else "")
                     for s in view.sets)


def converge(app: App, name: str, timeout: float) -> bool:
    """Run the run loop here until cluster ``name`` matches its spec (or is gone),
    showing each set's progress; False after ``timeout`` seconds."""
    progress = WaitProgress(app.runtime.clock)
    loop = app.run_loop(used=instances_of(scaler_for(app), name))
    # The loop's scaler reads machines through the round's listings: the check
    # after each round lists no instance again.
    scaler = loop.scaler
    told: set[str] = set()

    def done() -> bool:
        state = scaler.state(name)
        if state is None:
            return True  # destroyed and forgotten
        view = scaler.preview(state)
        line = sets_progress(view)
        if state.destroying:
            line = f"destroying: {counted(len(scaler.records(name)), 'request')} left"
        progress.show(f"{name}: {line}")
        if any(s.failed for s in view.sets):
            _tell_failures(scaler, name, told)
        return not state.destroying and plan_converged(view)

    said = _FailuresSaid(told)
    stage_log = logging.getLogger(STAGE_LOGGER)
    stage_log.addFilter(said)
    try:
        with interruptible(f"cluster {name}"), loop, progress.ticking():
            # --timeout counts from the progress's start, the loop's build included;
            # a round still running at the deadline is broken off there.
            left = max(0.0, timeout - progress.elapsed())
            return abandon_after(left, lambda: loop.run_until(
                done, timeout=left, interval=2.0, on_round=show_warnings), otherwise=False)
    finally:
        stage_log.removeFilter(said)


class _FailuresSaid(logging.Filter):
    """Notes in ``told`` each request whose failure this process's reconciler has
    just said on the stage logger (its WARNING line, with the step and the error),
    so that :func:`_tell_failures` says only those failed elsewhere (QA: a failure
    was said twice). Lets every line through."""

    def __init__(self, told: set[str]) -> None:
        super().__init__()
        self.told = told

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None)
        if record.levelno >= logging.WARNING and isinstance(request_id, str):
            self.told.add(request_id)
        return True


def _tell_failures(scaler: Scaler, name: str, told: set[str]) -> None:
    """Say once, as a warning, why each failed machine of cluster ``name`` failed:
    the set replaces it after a backoff and the wait goes on, so without this a
    permanent mistake (a subnet that does not exist) waited out --timeout unsaid
    (QA). Stored errors are redacted, as `machine get` shows them."""
    failed = scaler.store.list_requests(labels={LABEL_CLUSTER: name}, stages=(Stage.FAILED,))
    for record in failed:
        if record.request.id not in told:
            told.add(record.request.id)
            say(f"warning: {record.request.id} failed: {record.error or 'no reason stored'}",
                level=logging.WARNING, request_id=record.request.id)


def wait_destroyed(app: App, scaler: Scaler, name: str, timeout: float) -> bool:
    """Run the run loop here until every machine of cluster ``name`` is gone and
    the cluster is forgotten; False after ``timeout`` seconds."""

    progress = WaitProgress(app.runtime.clock)

    def gone() -> bool:
        left = len(scaler.records(name))
        progress.show(f"{name}: destroying, {counted(left, 'request')} left")
        return not left and scaler.recorded_state(name) is None

    with interruptible(f"the destruction of cluster {name}"), app.run_loop(
            used=instances_of(scaler, name)) as loop, progress.ticking():
        left = max(0.0, timeout - progress.elapsed())
        return abandon_after(left, lambda: loop.run_until(
            gone, timeout=left, interval=2.0, on_round=show_warnings), otherwise=False)

"""Runs a request's provider steps and stores the outcome after every one of them.

The unit of durability is the step: when a step returns, its index, the provider's
typed state, the attempt counter and the event lines are written in one
transaction (``ProgressStorage.save_progress``,
:mod:`talprov.reconcile.storage`). A process killed at any moment therefore
resumes at the step it was in, and because steps are idempotent (they look for
what they would create before creating it) nothing is created twice. A batch of
a pipelined step (``Step.pipelined``) is the exception that keeps the rule: a
request done with it runs its next steps at once, alone, and where it got is
written with the batch's outcomes; a crash before that resumes it at the
batch's step. So is a step whose work a restart finds again by looking
(``Step.found_again``: a lookup, or something it made and tagged): a request
done with it is written with its next stored step's outcome (or, parked
before a listing that failed, at the step it waits at); a crash before that
resumes it at the last stored step, which finds what was made since. As no
version-checked write came yet, such requests' versions are read (one query)
before a step that creates a machine (``Step.creates_machine``): a request
deleted meanwhile stops there. What a failed attempt does to a request (its
error, its retry or its failure) is :mod:`talprov.reconcile.failures`. Once a
pass was interrupted, no step starts and nothing is stored any more, also in the
threads it left running (:mod:`talprov.reconcile.stop_gate`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from talprov.daemon_pool import left_behind
from talprov.errors import validation_message
from talprov.logs import log_context
from talprov.providers.errors import (
    StepTimeout,
)
from talprov.providers.protocol import Provider, Runtime, Step, StepContext
from talprov.providers.types import STORED, Machine, Owner, Retry, Stage, StepResult
from talprov.reconcile.failures import (
    StepPolicy,
    record_failure,
)
from talprov.reconcile.stop_gate import GatedStorage, StopGate
from talprov.reconcile.storage import ProgressStorage
from talprov.reconcile.work import Work, save_all
from talprov.store.records import RequestRecord

log = logging.getLogger(__name__)



def within_timeout(
    step: Step, elapsed: float, outcome: StepResult | BaseException
) -> StepResult | BaseException:
    """``outcome``, or ``StepTimeout`` when ``step`` still waits after its ``timeout``.

    Only a ``Retry`` turns into the timeout, whose message names the step and the
    limit and keeps the step's own reason. Done (``None``) passes, and so do
    errors: they keep their class, which says more (a capacity error backs off
    the whole set; a transient one is bounded by the attempt limit).
    """
    if step.timeout is None or elapsed <= step.timeout or not isinstance(outcome, Retry):
        return outcome
    reason = outcome.reason or "waiting"
    return StepTimeout(f"step {step.name} not done after {step.timeout:.0f}s: {reason}")


def run_step(step: Step, ctx: StepContext[Any, Any]) -> StepResult:
    """Run ``step`` for one request as the runner does, without storing anything.

    For tests and tools that drive single steps: raises ``StepTimeout`` (see
    :func:`within_timeout`) or whatever the step raised; returns its result.
    """
    try:
        outcome: StepResult | BaseException = step.run(ctx)
    except Exception as exc:
        outcome = exc
    outcome = within_timeout(step, ctx.elapsed(), outcome)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class RequestRunner:
    """Advances requests of one provider instance through their steps."""

    def __init__(
        self, provider: Provider, owner: Owner, runtime: Runtime, store: ProgressStorage,
        policy: StepPolicy | None = None, gate: StopGate | None = None,
        instance_failing: Callable[[], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.owner = owner
        self.runtime = runtime
        #: Which requests are in a step; once stopped (the pass was interrupted),
        #: no step starts and nothing is stored (see talprov.reconcile.stop_gate).
        self.gate = gate or StopGate()
        self.store: ProgressStorage = GatedStorage(store, self.gate)
        self.policy = policy or StepPolicy()
        #: Whether the instance's listing fails now: a step's transient error
        #: then is the outage's, not the step's (see record_failure).
        self.instance_failing = instance_failing or (lambda: False)
        self._steps: Sequence[Step] = provider.steps()
        self._last_reason: dict[str, str] = {}

    # -- provisioning -------------------------------------------------------

    def prepare(self, record: RequestRecord, observed: Machine | None) -> Work | None:
        """A working copy ready to run, or None when the request failed validation."""
        work = Work.start(record, self.provider, self.owner, self.runtime, observed)
        try:
            work.state = self.provider.state_model.model_validate(record.state)
        except ValidationError:
            # State written by an older driver version: start the steps over; they
            # are idempotent and find what exists by tag.
            work.state = self.provider.state_model()
            work.step_index = 0
        else:
            if record.stage != Stage.DEPROVISIONING:
                work.step_index = self._resume_index(record)
        if record.stage == Stage.DEPROVISIONING:
            return work  # a deletion needs no config: it runs even when unreadable
        if record.unreadable is not None:
            self._set_aside(work, record.unreadable)
            return None
        try:
            # STORED: provider_data was checked when the request was made; a rule
            # made stricter since (label lengths) must not fail it now.
            work.data = self.provider.data_model.model_validate(
                record.request.provider_data, context=STORED)
        except ValidationError as exc:
            field_name, message = validation_message(exc, "provider_data")
            work.stage = Stage.FAILED
            work.error = f"{field_name}: {message}"
            work.events.append(f"failed: {work.error}")
            work.save(self.store, None)
            return None
        if work.stage == Stage.PENDING:
            # Stored with the first step's outcome. Steps do not block (long work
            # such as an image import returns Retry and continues next pass), so
            # that write comes promptly and one write per step is enough.
            work.stage = Stage.PROVISIONING
            work.events.append("provisioning started")
        return work

    def _set_aside(self, work: Work, reason: str) -> None:
        """Leave a request whose secrets cannot be read where it is, with ``reason``
        as its error (an event only when the error is new), and look again after
        ``backoff_cap``: the right key may be configured by then. Provisioning it
        without its config would make a machine that never becomes a node."""
        if work.record.error != reason:
            work.events.append(f"set aside: {reason}")
            # Once per request, at WARNING: it waits silently otherwise, for ever.
            rid = work.record.request.id
            log.warning("request %s set aside: %s", rid, reason,
                        extra={"request_id": rid, "provider": work.owner.instance})
        work.error = reason
        work.next_attempt_at = work.now() + timedelta(seconds=self.policy.backoff_cap)
        work.save(self.store, work.record.step_name)

    def _resume_index(self, record: RequestRecord) -> int:
        """Where a request continues: its stored step, found by name.

        The index alone would be wrong after an upgrade that added or removed a
        step before it; the stored name says which step it was. A name this
        driver no longer has starts the steps over (they are idempotent).
        """
        names = [step.name for step in self._steps]
        index, name = record.step_index, record.step_name
        if name is None or (index < len(names) and names[index] == name):
            return index
        if name in names:
            return names.index(name)
        return 0

    def step_of(self, work: Work) -> Step | None:
        if work.step_index >= len(self._steps):
            return None
        return self._steps[work.step_index]

    def waits_for_listing(self, work: Work) -> bool:
        """Whether ``work``'s current step needs the pass's listing (see ``Step``)."""
        step = self.step_of(work)
        return step is not None and step.needs_listing

    def advance(self, works: Sequence[Work], *, listed: bool = True) -> list[Work]:
        """Run steps for ``works`` until each waits, fails or is provisioned.

        Works that are at the same step run through that step's ``run_batch``
        together when the step has one; of a pipelined step (``Step.pipelined``),
        each work the step is done with goes on alone at once, in the worker that
        ran it. With ``listed`` False (the pass's listing is not in yet) a work
        stops before a step that needs the listing; those works are returned, to
        be advanced again once ``observed`` is set.
        """
        active = [w for w in works if not w.stopped]
        parked: list[Work] = []
        while active:
            by_step: dict[int, list[Work]] = {}
            for w in active:
                by_step.setdefault(w.step_index, []).append(w)
            still: list[Work] = []
            for index in sorted(by_step):
                group = by_step[index]
                step = self._steps[index] if index < len(self._steps) else None
                if not listed and step is not None and step.needs_listing:
                    parked += group  # outcomes stored as it goes on (or store_parked)
                    continue
                if step is None:
                    for w in group:
                        self._provisioned(w)
                    save_all(self.store, [(w, None) for w in group])
                    continue
                if step.creates_machine:
                    group = self._stop_changed(step, group)
                still += self._run_group(step, group, listed)
            active = still
        return parked

    def _stop_changed(self, step: Step, group: list[Work]) -> list[Work]:
        """``group`` without the works whose request changed in the store (a delete
        came) while they held unstored outcomes (``Step.found_again``).

        Such a work has met no version-checked write since its pass read it, and
        ``step`` creates a machine (``Step.creates_machine``): one read of the
        versions of those works, not of the others, stops them before a machine
        is made only to be deprovisioned. A stopped work is stored as always:
        the write is stale, so what it made goes into the deletion's record.
        """
        unchecked = [w for w in group if w.unsaved and not w.version_checked]
        if not unchecked:
            return group
        versions = self.store.request_versions([w.record.request.id for w in unchecked])
        for w in unchecked:
            w.version_checked = True
        changed = {id(w) for w in unchecked
                   if versions.get(w.record.request.id) != w.record.version}
        if changed:
            save_all(self.store, [(w, step.name) for w in group if id(w) in changed])
        return [w for w in group if id(w) not in changed]

    def store_parked(self, works: Sequence[Work]) -> None:
        """Store what ``works``, parked by :meth:`advance` before a step that needs
        the listing, hold unstored (``Step.found_again``), at that step: for a
        listing that failed, so that the request shows how far it got."""
        save_all(self.store, [(w, step.name) for w in works
                              if w.unsaved and (step := self.step_of(w)) is not None])

    def _run_group(self, step: Step, group: Sequence[Work], listed: bool) -> list[Work]:
        """Run ``step`` for ``group`` and store the outcomes in one transaction; the
        works to run their next step now.

        Of a pipelined step, a work whose outcome the batch tells early as done
        goes on through its next steps at once in the batch's worker, alone,
        until one waits, fails, needs the listing (with ``listed`` False: then it
        is returned to go on) or it is provisioned; where it got is stored with
        the group's outcomes. A crash before that write resumes the group at ``step``,
        which, as every step, finds what it made before.
        """
        chained: dict[int, tuple[str | None, bool]] = {}
        lock = threading.Lock()
        trouble: list[Exception] = []

        def go_on(work: Work, ctx: StepContext[Any, Any],
                  outcome: StepResult | BaseException) -> None:
            # In a worker of the batch, as the request's step ended. Never raises
            # into the driver: a bug here is raised again after the batch.
            with lock:
                if outcome is not None or id(work) in chained:
                    return  # waiting or failed: taken in with the group
                chained[id(work)] = (step.name, False)
            try:
                chained[id(work)] = self._chain(step, work, ctx, listed)
            except Exception as exc:
                with lock:
                    trouble.append(exc)

        pipelined = step.pipelined and step.run_batch is not None and len(group) > 1
        contexts, outcomes = self._run_step(step, group, go_on if pipelined else None)
        if trouble:
            raise trouble[0]
        taken = [chained[id(w)] if id(w) in chained else self._take(step, w, ctx, outcome)
                 for w, ctx, outcome in zip(group, contexts, outcomes, strict=True)]
        # The whole group's outcomes are one store transaction; a found-again step's
        # requests that go on are stored with their next step instead.
        for w, (_, more) in zip(group, taken, strict=True):
            w.unsaved = step.found_again and more
        writes = [(w, name) for w, (name, _) in zip(group, taken, strict=True) if not w.unsaved]
        stored = dict(zip((id(w) for w, _ in writes), save_all(self.store, writes),
                          strict=True))
        return [w for w, (_, more) in zip(group, taken, strict=True)
                if more and stored.get(id(w), True)]

    def _chain(self, step: Step, work: Work, ctx: StepContext[Any, Any],
               listed: bool) -> tuple[str | None, bool]:
        """Take in ``step`` done for ``work`` and run its next steps, alone, until
        one does not end done or (``listed`` False) needs the listing. Returns the
        step name to store and whether the work is to go on once listed."""
        name, more = self._take(step, work, ctx, None)
        while more:
            nxt = self._steps[work.step_index]
            if not listed and nxt.needs_listing:
                return name, True
            (nxt_ctx,), (outcome,) = self._run_step(nxt, [work])
            name, more = self._take(nxt, work, nxt_ctx, outcome)
        return name, False

    def _take(self, step: Step, work: Work, ctx: StepContext[Any, Any],
              outcome: StepResult | BaseException) -> tuple[str | None, bool]:
        """Take the request's events and outcome of ``step`` (the timeout applied)
        into ``work``; see :meth:`_apply`."""
        work.events.extend(ctx.events)
        with log_context(request_id=work.record.request.id, provider=self.owner.instance,
                         step=step.name):
            return self._apply(work, step, within_timeout(step, ctx.elapsed(), outcome))

    def _run_step(
        self, step: Step, group: Sequence[Work],
        go_on: Callable[[Work, StepContext[Any, Any], StepResult | BaseException], None]
        | None = None,
    ) -> tuple[list[StepContext[Any, Any]], list[StepResult | BaseException]]:
        """``step`` for ``group``: the contexts and the step's raw outcomes. With
        ``go_on``, each context tells its outcome there as soon as it is known."""
        contexts = [w.context() for w in group]
        if go_on is not None:
            for w, ctx in zip(group, contexts, strict=True):
                ctx.on_finished = functools.partial(go_on, w, ctx)
        with self._in_step([w.record.request.id for w in group]):
            return contexts, self._outcomes(step, contexts)

    @contextlib.contextmanager
    def _in_step(self, request_ids: list[str]) -> Iterator[None]:
        """Note ``request_ids`` as in a step on the gate while the block runs.

        Raises :class:`Abandoned` when the gate was stopped. An interruption
        raised in this very thread ended the step's calls with it, and the
        requests leave the step; unless the step left calls running in threads
        of its own (a batch's, see :func:`left_behind`): then they stay noted,
        and their leases with this process.
        """
        self.gate.enter(request_ids)
        mark = left_behind()
        try:
            yield
        except BaseException:
            if left_behind() == mark:
                self.gate.leave(request_ids)
            raise
        self.gate.leave(request_ids)

    def _outcomes(self, step: Step, contexts: Sequence[StepContext[Any, Any]]
                  ) -> list[StepResult | BaseException]:
        """The step's raw outcome for each context, in order."""
        outcomes: list[StepResult | BaseException]
        instance = self.owner.instance
        if step.run_batch is not None and len(contexts) > 1:
            try:
                with log_context(provider=instance, step=step.name):
                    outcomes = list(step.run_batch(contexts))
            except Exception as exc:
                outcomes = [exc] * len(contexts)
            if len(outcomes) != len(contexts):
                raise RuntimeError(f"step {step.name}: run_batch returned a wrong count")
        else:
            outcomes = []
            for ctx in contexts:
                try:
                    with log_context(request_id=ctx.request.id, provider=instance,
                                     step=step.name):
                        outcomes.append(step.run(ctx))
                except Exception as exc:
                    outcomes.append(exc)
        return outcomes

    def _apply(
        self, work: Work, step: Step, outcome: StepResult | BaseException
    ) -> tuple[str | None, bool]:
        """Record a step's outcome in ``work`` (not yet stored).

        Returns the step name to store with it and whether the request should run
        its next step now (once stored).
        """
        work.step_run = step.name
        if isinstance(outcome, BaseException):
            record_failure(work, step.name, outcome, self.policy,
                           instance_failing=self.instance_failing())
            return step.name, False
        if isinstance(outcome, Retry):
            work.next_attempt_at = work.now() + timedelta(seconds=max(0.0, outcome.after))
            work.attempts = 0
            work.error = None
            # Waiting steps return the same reason pass after pass; log it once.
            line = f"{step.name}: {outcome.reason}"
            if outcome.reason and self._last_reason.get(work.record.request.id) != line:
                self._last_reason[work.record.request.id] = line
                work.events.append(line)
            return step.name, False
        work.events.append(f"step {step.name} done")
        work.step_index += 1
        work.attempts = 0
        work.error = None
        work.next_attempt_at = None
        work.step_started_at = None
        nxt = self.step_of(work)
        if nxt is None:
            # The last step's outcome and the stage change are one write.
            self._provisioned(work)
            return None, False
        return nxt.name, True

    @staticmethod
    def _provisioned(work: Work) -> None:
        """Mark ``work`` provisioned (stored by the caller with step name None)."""
        work.stage = Stage.PROVISIONED
        work.next_attempt_at = None
        assert work.state is not None
        work.events.append(f"provisioned: {work.state.infra_id or 'machine'} ready")

    # -- deprovisioning -----------------------------------------------------

    def deprovision(self, work: Work) -> None:
        """Run one deprovision attempt; a finished one moves the request to GONE."""
        with log_context(request_id=work.record.request.id, provider=self.owner.instance,
                         step="deprovision"):
            self._deprovision(work)

    def _deprovision(self, work: Work) -> None:
        work.step_run = "deprovision"
        if work.state is None:
            work.state = self.provider.state_model()
        # Deprovision works without provider_data being valid: a request must be
        # deletable even when its data no longer validates.
        work.data = None
        ctx = work.context()
        try:
            with self._in_step([work.record.request.id]):
                outcome: StepResult | BaseException = self.provider.deprovision(ctx)
        except Exception as exc:
            outcome = exc
        work.events.extend(ctx.events)
        if isinstance(outcome, BaseException):
            # Never give up on a deletion: that is how machines leak. Keep retrying
            # with a capped backoff and show the error.
            record_failure(work, "deprovision", outcome, self.policy, deleting=True)
        elif isinstance(outcome, Retry):
            # The cloud answered and the deletion moved on: the next fault is the
            # first in a row again (faults between progress must not add up).
            work.attempts = 0
            work.error = None
            work.next_attempt_at = work.now() + timedelta(seconds=max(0.0, outcome.after))
            if outcome.reason:
                work.events.append(f"deprovision: {outcome.reason}")
        else:
            work.stage = Stage.GONE
            work.error = None
            work.next_attempt_at = None
            work.events.append("deprovisioned: gone")
        work.save(self.store, "deprovision")

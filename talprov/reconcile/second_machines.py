"""Second machines: a request's machines besides the one its record names.

A create started again while the first one still ran (its starter was stopped
before it stored what it started) can leave two machines that carry one
request's marks, on a platform that lets both succeed (vcsim allows two VMs of
one name). The request keeps the machine its record names (``infra_id``); the
other is nobody's. Providers implementing
:class:`~talprov.providers.protocol.RemovesSecondMachines` have such machines
removed here, found in the pass's listing, so finding them costs no call.

A listed machine is removed as a second machine only when all of these hold:

* the listing shows it with a request's marks and another ``infra_id`` than
  the request's record, and shows the recorded machine as well (a request
  never loses its only machine here; one whose recorded machine vanished is
  left to the drift check, and a retry may adopt the other);
* no request of the instance records it (as the pass read them): a machine
  that is one request's own is never another's second, whatever marks the
  listing read on it (AWS's batch members list their call's other requests);
* this worker holds the request's lease while it looks and removes (claimed
  for the purpose, so no step of it runs meanwhile, here or elsewhere);
* the record, read again under that lease, still names the same machine, and
  the request is provisioned or provisioning at a step after every step that
  creates a machine (``Step.creates_machine``; a driver without such a step:
  provisioned only). A request mid-create, or without a recorded machine, or
  being deleted (its deprovision removes what it finds) is never touched.

The removal is upkeep, as the leftover sweep (:mod:`talprov.reconcile.leftovers`)
is: done by a full pass after every instance's steps, and only for an instance
none of whose requests is on its way to provisioned (pending or provisioning
when the pass read them), so that its round trips never stand between a
request and provisioned, in this pass or the next; requests being deleted may
wait for it. An instance that always has a request on its way has them
removed once they have been seen for a whole ``interval``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from talprov.providers.protocol import Provider, RemovesSecondMachines
from talprov.providers.types import Machine, MachineState, Owner, Stage
from talprov.reconcile.leases import LeaseRenewal
from talprov.reconcile.leftovers import describe
from talprov.secrets import redact
from talprov.store.errors import StaleRecord, StoreError
from talprov.store.observations import RequestSummary
from talprov.store.records import RequestRecord
from talprov.store.store import Store

log = logging.getLogger(__name__)

#: The stages in which a request may have a second machine removed.
_STAGES = (Stage.PROVISIONING, Stage.PROVISIONED)


@dataclass(frozen=True)
class SecondMachine:
    """A listed ``machine`` of request ``request_id``, whose record names ``kept``."""

    request_id: str
    kept: str
    machine: Machine


def second_machines(group: Sequence[RequestSummary],
                    listed: Mapping[str, Sequence[Machine]]) -> list[SecondMachine]:
    """The machines ``listed`` (by request) shows besides the recorded one of a
    request of ``group`` that is provisioning or provisioned, while the recorded
    one is listed too; machines on their way out, and any machine a request of
    ``group`` records, are left alone. Pure."""
    # A machine some request records is that request's, whatever marks the listing
    # read on it (a batch-launched machine lists its call's other requests too):
    # never removed as another request's second.
    recorded = {s.infra_id for s in group if s.infra_id is not None}
    found: list[SecondMachine] = []
    for summary in group:
        kept = summary.infra_id
        machines = listed.get(summary.id, ())
        if kept is None or summary.stage not in _STAGES or len(machines) < 2:
            continue
        if not any(m.infra_id == kept and m.state != MachineState.TERMINATED
                   for m in machines):
            continue
        found += [SecondMachine(summary.id, kept, m) for m in machines
                  if m.infra_id not in recorded and m.state != MachineState.TERMINATED]
    return found


def after_creation(record: RequestRecord, provider: Provider) -> bool:
    """Whether ``record``'s machine-creating steps are behind it: provisioned, or
    provisioning at a step after the last ``creates_machine`` one (found by the
    stored step name). Pure."""
    if record.stage == Stage.PROVISIONED:
        return True
    if record.stage != Stage.PROVISIONING:
        return False
    steps = provider.steps()
    names = [step.name for step in steps]
    creating = [i for i, step in enumerate(steps) if step.creates_machine]
    if not creating or record.step_name not in names:
        return False
    return names.index(record.step_name) > creating[-1]


class SecondMachineRemover:
    """Removes second machines as upkeep (see the module docstring).

    ``leases`` claims and gives back the requests' leases (the reconciler's);
    ``clock`` is the runtime's clock; ``installation`` this talprov's mark.
    """

    def __init__(self, store: Store, leases: LeaseRenewal, installation: str,
                 clock: Callable[[], float], interval: float) -> None:
        self.store = store
        self.leases = leases
        self.installation = installation
        self.clock = clock
        self.interval = interval
        #: What this pass's listings showed, by instance, and whether the instance
        #: had a request on its way to provisioned (taken by every pass's end).
        self._found: dict[str, tuple[Provider, list[SecondMachine], bool]] = {}
        #: Since when an instance's listings have shown second machines.
        self._since: dict[str, float] = {}
        #: When a removal of a machine (by instance and id) failed last.
        self._failed: dict[tuple[str, str], float] = {}

    def note(self, instance: str, provider: Provider, group: Sequence[RequestSummary],
             listed: Mapping[str, Sequence[Machine]]) -> None:
        """Take in what the pass's listing of ``instance`` showed of ``group``'s
        requests (``listed``: its machines by request). No call; never raises."""
        if not isinstance(provider, RemovesSecondMachines):
            return
        now = self.clock()
        found = [s for s in second_machines(group, listed)
                 if not self._failed_lately(instance, s.machine.infra_id, now)]
        if not found:
            self._since.pop(instance, None)
            return
        self._since.setdefault(instance, now)
        on_its_way = any(s.stage in (Stage.PENDING, Stage.PROVISIONING) for s in group)
        self._found[instance] = (provider, found, on_its_way)

    def _failed_lately(self, instance: str, infra_id: str, now: float) -> bool:
        failed = self._failed.get((instance, infra_id))
        return failed is not None and now - failed < self.interval

    def remove_due(self, errors: list[str], *, full: bool = True) -> int:
        """Remove what this pass's listings showed, of every instance without a
        request on its way to provisioned or whose second machines have been seen
        for ``interval``; how many machines were destroyed. Only in a ``full``
        pass (one over every request: another may not have seen them all).

        Failures, a bug's too, are appended to ``errors`` (redacted; a bug by its
        class only) and never stop the other machines or instances; a machine
        whose removal failed is tried again after ``interval``. Never raises but
        for an interrupt (``KeyboardInterrupt``, ``SystemExit``), after giving
        back the leases it claimed, as it always does. Idempotent.
        """
        found, self._found = self._found, {}
        if not full:
            return 0
        now = self.clock()
        self._failed = {k: t for k, t in self._failed.items() if now - t < self.interval}
        removed = 0
        for instance, (provider, seconds, on_its_way) in sorted(found.items()):
            if on_its_way and now - self._since.get(instance, now) < self.interval:
                continue
            try:
                removed += self._remove(instance, provider, seconds, errors)
            except Exception as exc:  # a bug: reported, and the other instances go on
                log.error("%s: removing second machines failed", instance, exc_info=True,
                          extra={"provider": instance})
                errors.append(f"{instance}: second machines: {describe(exc)}")
        return removed

    def _remove(self, instance: str, provider: Provider, seconds: Sequence[SecondMachine],
                errors: list[str]) -> int:
        assert isinstance(provider, RemovesSecondMachines)
        ids = sorted({s.request_id for s in seconds})
        try:
            held = self.leases.claim_held(ids)
        except StoreError as exc:
            errors.append(f"{instance}: second machines: {redact(str(exc))}")
            return 0
        removed = 0
        # Given back however this ends: an interrupt (Ctrl-C) or a bug here must not
        # leave the requests held, and renewed, with no step of theirs running.
        try:
            records = {r.request.id: r for r in self.store.list_requests(ids=held)}
            for rid in sorted(records):
                record = records[rid]
                mine = [s for s in seconds if s.request_id == rid and s.kept == record.infra_id]
                if mine and after_creation(record, provider):
                    removed += self._remove_of(instance, provider, record, mine, errors)
        except StoreError as exc:
            errors.append(f"{instance}: second machines: {redact(str(exc))}")
        finally:
            try:
                self.leases.release_held(list(held))
            except StoreError as exc:  # forgotten here: the leases just run out
                errors.append(f"{instance}: second machines: {redact(str(exc))}")
        return removed

    def _remove_of(self, instance: str, provider: RemovesSecondMachines,
                   record: RequestRecord, seconds: Sequence[SecondMachine],
                   errors: list[str]) -> int:
        """Remove ``seconds`` of the held ``record``; its events say what was done."""
        owner = Owner(self.installation, instance)
        events: list[str] = []
        for second in seconds:
            machine = second.machine
            try:
                line = provider.remove_second_machine(owner, machine, second.kept)
            except Exception as exc:
                self._failed[(instance, machine.infra_id)] = self.clock()
                errors.append(f"{instance}: remove second machine {machine.infra_id} of "
                              f"request {record.request.id}: {describe(exc)}")
                continue
            self._failed.pop((instance, machine.infra_id), None)
            if line is not None:
                events.append(f"{line}; this request's machine is {second.kept}")
                log.warning("%s: request %s: %s", instance, record.request.id, events[-1],
                            extra={"request_id": record.request.id, "provider": instance})
        if events:
            try:
                self.store.note_observed(record.request.id, expected_version=record.version,
                                         events=events,
                                         now=datetime.fromtimestamp(self.clock(), UTC))
            except StaleRecord:
                log.info("request %s changed while its second machines were removed",
                         record.request.id, extra={"request_id": record.request.id})
        return len(events)

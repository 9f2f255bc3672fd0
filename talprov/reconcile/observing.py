"""What a reconcile pass writes about requests it looks at without working on them.

A provisioned request's machine is checked against the pass's listing (drift:
gone, addresses, UUID); a request blocked by a failing listing or an instance
this worker lacks gets the reason. These are notes at the version the pass read
(``Store.note_observed``): a request that changed meanwhile is left for the
next pass to judge afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from talprov.providers.types import Machine, MachineState, Stage
from talprov.reconcile.work import STAGE_LOGGER
from talprov.store.errors import StaleRecord
from talprov.store.observations import RequestSummary
from talprov.store.store import Store

log = logging.getLogger(__name__)
stage_log = logging.getLogger(STAGE_LOGGER)

#: How the error of a request whose provisioned machine vanished begins (see
#: :func:`machine_lost`): the scaler replaces such a machine without a backoff.
LOST_MACHINE = "machine lost"
#: A provisioned machine must be missing from this many consecutive listings before
#: it is declared gone: listings of some clouds lag behind creates and deletes. The
#: count is kept in the store (``requests.missed_listings``), so it carries over
#: between processes.
MISSING_PASSES_BEFORE_LOST = 2


def machine_lost(error: str | None) -> bool:
    """Whether a request's stored ``error`` says its provisioned machine vanished. Pure."""
    return (error or "").startswith(f"{LOST_MACHINE}: ")


def machines_by_request(machines: Sequence[Machine]) -> dict[str, list[Machine]]:
    """Every listed machine that names a request, by request, in listing order. Pure."""
    found: dict[str, list[Machine]] = {}
    for machine in machines:
        if machine.request_id is not None:
            found.setdefault(machine.request_id, []).append(machine)
    return found


def by_request(listed: Mapping[str, Sequence[Machine]],
               recorded: Mapping[str, str | None]) -> dict[str, Machine]:
    """The one machine a pass hands each request's steps and drift check, of
    ``listed`` (:func:`machines_by_request`): the one whose ``infra_id`` its
    record names (``recorded``, by request id). A request without a recorded
    machine gets the last listed (its steps decide, as they did before a second
    machine could be seen); one whose recorded machine is not listed gets none,
    though others claim it: its steps and the drift check must see its machine
    missing, not take another's state and addresses for its own. Pure."""
    chosen: dict[str, Machine] = {}
    for rid, machines in listed.items():
        kept = recorded.get(rid)
        if kept is None:
            chosen[rid] = machines[-1]
            continue
        own = next((m for m in machines if m.infra_id == kept), None)
        if own is not None:
            chosen[rid] = own
    return chosen


class Observations:
    """Writes a pass's observations through ``store``; ``now`` is the pass's clock."""

    def __init__(self, store: Store, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    def check_drifts(self, group: Sequence[RequestSummary],
                     observed: Mapping[str, Machine]) -> None:
        """Check every provisioned request of ``group`` against the listing's
        ``observed`` machines (by request id). Raises ``StoreError`` when the store
        cannot be written; idempotent per listing except for the missed count."""
        for summary in group:
            if summary.stage == Stage.PROVISIONED:
                self._check_drift(summary, observed.get(summary.id))

    def _check_drift(self, record: RequestSummary, machine: Machine | None) -> None:
        rid = record.id
        if machine is None or machine.state in (MachineState.TERMINATED, MachineState.ERROR):
            # Counted in the store, not in memory: a process that runs one pass and
            # exits (`reconcile --once`, `apply --wait`) counts on from the last one.
            missed = record.missed_listings + 1
            if missed < MISSING_PASSES_BEFORE_LOST:
                self.note(record, missed_listings=missed)
                return
            what = "disappeared" if machine is None else f"is {machine.state.value}"
            message = f"{LOST_MACHINE}: {record.infra_id or '?'} {what} (changed outside talprov?)"
            if self.note(record, stage=Stage.FAILED, error=message, events=[message],
                         missed_listings=0):
                stage_log.warning(
                    "request %s (%s): %s -> %s: %s", rid, record.provider,
                    Stage.PROVISIONED.value, Stage.FAILED.value, message,
                    extra={"request_id": rid, "provider": record.provider})
            return
        addresses = tuple(machine.addresses)
        uuid = record.machine_uuid or machine.machine_uuid
        if (addresses != tuple(record.addresses) or uuid != record.machine_uuid
                or record.missed_listings):
            self.note(record, addresses=addresses or record.addresses, machine_uuid=uuid,
                      missed_listings=0)

    def note(
        self, summary: RequestSummary, *, stage: Stage | None = None, error: str | None = None,
        events: Sequence[str] = (), addresses: Sequence[str] | None = None,
        machine_uuid: str | None = None, missed_listings: int | None = None,
    ) -> bool:
        """Write what the pass observed; False when the request changed meanwhile.
        Raises ``StoreError`` when the store cannot be written."""
        try:
            self.store.note_observed(
                summary.id, expected_version=summary.version, stage=stage, error=error,
                addresses=addresses, machine_uuid=machine_uuid,
                missed_listings=missed_listings, events=list(events), now=self.now(),
            )
        except StaleRecord:
            log.debug("request %s changed during the pass", summary.id,
                      extra={"request_id": summary.id})
            return False
        return True

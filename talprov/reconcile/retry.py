"""``talprov machine retry``: a failed request goes back to work at its failed step."""

from __future__ import annotations

from datetime import datetime

from talprov.errors import Conflict
from talprov.providers.types import Stage
from talprov.reconcile.observing import machine_lost
from talprov.reconcile.storage import ProgressStorage
from talprov.store.records import RequestRecord


def retry_failed(storage: ProgressStorage, request_id: str, now: datetime) -> RequestRecord:
    """Put failed request ``request_id`` back to ``pending`` at the step it failed in.

    The step's state (what it created so far), the machine ids and the events
    stay; the error, the attempt count and the step's start time are cleared, so
    the step gets its full attempts and timeout again. The next reconcile pass
    resumes there (steps are idempotent and find what exists). A request whose
    machine was lost after it ran starts its steps over instead.

    Idempotent: a request already pending again is returned unchanged. Raises
    ``KeyError`` for an unknown request, ``Conflict`` naming the stage for any
    other stage than failed or pending, ``StaleRecord`` when the request
    changed while being reset.
    """
    record = storage.get_request(request_id)
    if record is None:
        raise KeyError(request_id)
    if record.stage == Stage.PENDING:
        return record
    if record.stage != Stage.FAILED:
        raise Conflict(f"request {request_id} is {record.stage.value}: only a failed "
                       "request can be retried")
    if machine_lost(record.error):
        # Its machine ran and vanished: every step is done, so resuming would mark
        # it provisioned without a machine. Start over with nothing (the steps
        # find by tag whatever exists), forgetting the vanished machine's ids.
        return storage.save_progress(
            request_id, expected_version=record.version, stage=Stage.PENDING,
            step_index=0, step_name=None, state={}, error=None, attempts=0,
            next_attempt_at=None, step_started_at=None, infra_id=None, machine_uuid=None,
            addresses=(), now=now,
            events=["retry asked: its machine was lost; the steps start over"],
        )
    where = f"step {record.step_name}" if record.step_name else "its first step"
    return storage.save_progress(
        request_id, expected_version=record.version, stage=Stage.PENDING,
        step_index=record.step_index, step_name=record.step_name, state=record.state,
        error=None, attempts=0, next_attempt_at=None, step_started_at=None,
        infra_id=record.infra_id, machine_uuid=record.machine_uuid,
        addresses=record.addresses, events=[f"retry asked: continues at {where}"], now=now,
    )

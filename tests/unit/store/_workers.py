"""Code run in child processes by the multi-process store tests.

Lives in its own module so that ``spawn`` children can import it by name. One
worker runs three races in turn, each started for both workers at once by a
shared barrier, because starting Python processes is the slow part. It reports
``(name, results)`` on the queue, or ``(name, "error: <traceback>")``.
"""

from __future__ import annotations

import traceback
from typing import Any

from talprov.providers.types import MachineRequest, Stage
from talprov.store import StaleRecord, Store

CONTESTED = "contested"


def shared_ids(count: int) -> list[str]:
    return [f"shared-{n}" for n in range(count)]


def _request(request_id: str) -> MachineRequest:
    return MachineRequest(
        id=request_id,
        provider="aws-dev",
        talos_version="v1.13.9",
        machine_config="machine: {type: worker}",
        labels={"made-by": "worker"},
    )


def _advance_contested(store: Store, name: str) -> bool:
    """Read the contested request and try to move it one step on; False if stale."""
    record = store.get_request(CONTESTED)
    assert record is not None
    try:
        store.save_progress(
            CONTESTED,
            expected_version=record.version,
            stage=Stage.PROVISIONING,
            step_index=record.step_index + 1,
            step_name=name,
            state={"last": name},
            error=None,
            attempts=0,
            next_attempt_at=None,
            step_started_at=None,
            infra_id=None,
            machine_uuid=None,
            addresses=(),
            events=[f"{name} advanced to {record.step_index + 1}"],
        )
    except StaleRecord:
        return False
    return True


def race_everything(
    url: str, name: str, barrier: Any, queue: Any, *, count: int, rounds: int
) -> None:
    """1. migrate a fresh store and create shared and own requests at once;
    2. advance one request in a loop, both workers at once;
    3. claim the shared requests' leases, both workers at once."""
    try:
        barrier.wait(timeout=120)
        store = Store(url)
        try:
            store.migrate()
            for request_id in [*shared_ids(count), CONTESTED]:
                store.create_request(_request(request_id))
                store.create_request(_request(f"{name}-{request_id}"))

            barrier.wait(timeout=120)
            wins = sum(_advance_contested(store, name) for _ in range(rounds))

            barrier.wait(timeout=120)
            claimed = [i for i in shared_ids(count) if store.claim(i, owner=name, ttl=600)]
        finally:
            store.close()
        queue.put((name, {"wins": wins, "losses": rounds - wins, "claimed": claimed}))
    except BaseException:
        barrier.abort()  # release the other worker instead of leaving it waiting
        queue.put((name, "error: " + traceback.format_exc()))

"""A request set scaling down removes a member marked for deletion first (QA).

`talprov machine mark-delete cs-3` said "its set removes it first when it scales
down", yet `talprov set scale cs 3` deleted the oldest unmarked member: request
sets never looked at the mark that clusters' machine sets honour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from talprov.providers.types import MachineRequest, Stage
from talprov.sets import scale_down_order
from talprov.store.records import RequestRecord
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.test_cli_retry_sets_watch import record_request_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def provision(store: Store, request_id: str) -> None:
    record = store.get_request(request_id)
    assert record is not None
    store.save_progress(
        request_id, expected_version=record.version, stage=Stage.PROVISIONED,
        step_index=record.step_index, step_name=None, state=record.state, error=None,
        attempts=0, next_attempt_at=None, step_started_at=None, infra_id=f"i-{request_id}",
        machine_uuid=None, addresses=(), events=["provisioned"])


def test_set_scale_deletes_the_member_marked_by_machine_mark_delete(home: Home) -> None:
    record_request_set(home, "cs", 4)
    store = Store(home.store_url)
    try:
        for index in range(4):
            provision(store, f"cs-{index}")
    finally:
        store.close()
    marked = home.invoke("machine", "mark-delete", "cs-3")
    assert marked.exit_code == 0, marked.output
    assert "its set removes it first when it scales down" in marked.output

    scaled = home.invoke("set", "scale", "cs", "3", "-o", "json")
    assert scaled.exit_code == 0, scaled.output
    assert json.loads(scaled.stdout)["deleted"] == ["cs-3"]


def member(store: Store, request_id: str, minutes: int, role: str, *,
           provisioned: bool = True, marked: bool = False) -> RequestRecord:
    store.create_request(MachineRequest(id=request_id, provider="fake",
                                        talos_version="v1.13.9", labels={"role": role}),
                         now=T0 + timedelta(minutes=minutes))
    if provisioned:
        provision(store, request_id)
    if marked:
        store.mark_for_deletion(request_id)
    record = store.get_request(request_id)
    assert record is not None
    return record


def test_a_marked_member_goes_before_unallocated_workers_and_older_members() -> None:
    # The mark is the first class, as in a cluster's machine set: before the
    # unallocated members, whatever the marked member's role or age.
    with Store("sqlite://") as store:
        store.migrate()
        members = [
            member(store, "s-0", 0, "worker"),
            member(store, "s-1", 1, "worker", provisioned=False),
            member(store, "s-2", 2, "controlplane", marked=True),
            member(store, "s-3", 3, "worker", marked=True),
            member(store, "s-4", 4, "controlplane"),
        ]
        assert [m.request.id for m in scale_down_order(members)] == [
            "s-3", "s-2", "s-1", "s-0", "s-4"]

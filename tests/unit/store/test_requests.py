"""Requests: round trip, idempotent create, conflicts, progress, deletion, forget."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from talprov.errors import Conflict
from talprov.providers.types import Stage
from talprov.store import RequestRecord, StaleRecord, Store, progress
from tests.unit.store.factories import CANARY_CONFIG, CANARY_JOIN, make_request

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def advance(store: Store, record: RequestRecord, **changes: Any) -> RequestRecord:
    """save_progress with the record's own values unless overridden."""
    fields: dict[str, Any] = {
        "stage": record.stage,
        "step_index": record.step_index,
        "step_name": record.step_name,
        "state": record.state,
        "error": record.error,
        "attempts": record.attempts,
        "next_attempt_at": record.next_attempt_at,
        "step_started_at": record.step_started_at,
        "infra_id": record.infra_id,
        "machine_uuid": record.machine_uuid,
        "addresses": record.addresses,
        "events": (),
    }
    fields.update(changes)
    return store.save_progress(record.request.id, expected_version=record.version, **fields)


def test_round_trip_keeps_every_field_and_secret(store: Store) -> None:
    request = make_request(meta_values=[{"key": 10, "value": "foo"}], secure_boot=True)

    created = store.create_request(request, now=T0)
    fetched = store.get_request("web-1")

    assert fetched == created
    assert fetched.request == request
    assert fetched.request.machine_config.get_secret_value() == CANARY_CONFIG
    assert fetched.request.join is not None
    assert fetched.request.join.api_url.get_secret_value() == CANARY_JOIN
    assert fetched.request.join.mode == "kernel_args"
    assert fetched.fingerprint == request.fingerprint()
    assert (fetched.stage, fetched.step_index, fetched.attempts) == (Stage.PENDING, 0, 0)
    assert fetched.created_at == T0
    assert fetched.created_at.tzinfo is not None
    assert fetched.addresses == ()
    assert fetched.state == {}
    assert fetched.version == 1
    assert store.get_request("nope") is None


def test_request_without_join_round_trips(store: Store) -> None:
    request = make_request(join=None, machine_config="")
    store.create_request(request)
    fetched = store.get_request("web-1")
    assert fetched is not None
    assert fetched.request == request
    assert fetched.request.join is None


def test_create_is_idempotent_for_the_same_body(store: Store) -> None:
    first = store.create_request(make_request(), now=T0)
    again = store.create_request(make_request(), now=T0 + timedelta(hours=1))

    assert again == first
    assert [e.message for e in store.events("web-1")] == ["request created"]


def test_create_with_a_different_body_conflicts_without_leaking_secrets(store: Store) -> None:
    store.create_request(make_request())
    different = make_request(machine_config="machine: {other: CANARY-OTHER}")

    with pytest.raises(Conflict, match="request web-1 already exists") as caught:
        store.create_request(different)

    assert "CANARY" not in str(caught.value)
    stored = store.get_request("web-1")
    assert stored is not None
    assert stored.request.machine_config.get_secret_value() == CANARY_CONFIG


def test_gone_request_is_replaced_by_a_fresh_pending_one(store: Store) -> None:
    first = store.create_request(make_request())
    first = advance(store, first, stage=Stage.GONE, step_index=3, infra_id="i-1", state={"a": 1})
    replacement = make_request(labels={"role": "control-plane"})

    fresh = store.create_request(replacement, now=T0)

    assert fresh.stage == Stage.PENDING
    assert fresh.step_index == 0
    assert fresh.infra_id is None
    assert fresh.state == {}
    assert fresh.created_at == T0
    assert fresh.request == replacement
    assert fresh.version > first.version  # a stale writer of the old one still loses
    assert [r.id for r in store.list_requests(labels={"role": "control-plane"})] == ["web-1"]
    assert store.list_requests(labels={"role": "worker"}) == []


def test_creating_the_same_body_after_it_is_gone_starts_again(store: Store) -> None:
    first = store.create_request(make_request())
    gone = advance(store, first, stage=Stage.GONE, infra_id="i-old")

    again = store.create_request(make_request())

    assert again.stage == Stage.PENDING
    assert again.infra_id is None
    assert again.version == gone.version + 1
    assert [e.message for e in store.events("web-1")][-1].startswith("request created again")


def test_save_progress_stores_the_step_and_its_events(store: Store) -> None:
    record = store.create_request(make_request(), now=T0)
    retry_at = T0 + timedelta(seconds=30)

    saved = advance(
        store,
        record,
        stage=Stage.PROVISIONING,
        step_index=1,
        step_name="ensure_instance",
        state={"image_id": "ami-1", "nested": {"n": [1, 2]}},
        attempts=2,
        next_attempt_at=retry_at,
        step_started_at=T0,
        infra_id="i-0abc",
        machine_uuid="4c4c4544-0000",
        addresses=["10.0.0.5", "fd00::5"],
        events=["image resolved", "instance i-0abc created"],
        now=T0 + timedelta(seconds=1),
    )

    assert saved == store.get_request("web-1")
    assert saved.version == record.version + 1
    assert saved.state == {"image_id": "ami-1", "nested": {"n": [1, 2]}}
    assert saved.next_attempt_at == retry_at
    assert saved.step_started_at == T0
    assert saved.addresses == ("10.0.0.5", "fd00::5")
    assert saved.updated_at == T0 + timedelta(seconds=1)
    assert saved.created_at == T0
    log = store.events("web-1")
    assert [e.message for e in log] == [
        "request created",
        "image resolved",
        "instance i-0abc created",
    ]
    assert log[-1].at == T0 + timedelta(seconds=1)


def test_a_stale_version_is_rejected_and_changes_nothing(store: Store) -> None:
    record = store.create_request(make_request())
    winner = advance(store, record, step_index=1, events=["winner"])

    with pytest.raises(StaleRecord, match="another writer"):
        advance(store, record, step_index=5, events=["loser"])

    assert store.get_request("web-1") == winner
    assert "loser" not in [e.message for e in store.events("web-1")]


def test_saving_progress_of_a_forgotten_request_is_stale(store: Store) -> None:
    record = store.create_request(make_request())
    store.forget_request("web-1", actor="ops", reason="test")
    with pytest.raises(StaleRecord, match="no longer exists"):
        advance(store, record, step_index=1)


def test_a_failure_inside_the_transaction_leaves_row_and_events_unchanged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = store.create_request(make_request())

    def crash(*_args: object) -> None:
        raise RuntimeError("crash after the row update, before the events")

    monkeypatch.setattr(progress, "insert_stamped_events", crash)
    with pytest.raises(RuntimeError, match="crash after the row update"):
        advance(store, record, stage=Stage.PROVISIONING, step_index=2, events=["x"])
    monkeypatch.undo()

    assert store.get_request("web-1") == record
    assert [e.message for e in store.events("web-1")] == ["request created"]
    # The version did not move, so the same write succeeds afterwards.
    assert advance(store, record, step_index=2).step_index == 2


def test_a_database_error_in_the_event_insert_rolls_back_and_hides_values(
    store: Store,
) -> None:
    record = store.create_request(make_request())
    bad_events: Any = ["CANARY-EVENT-LINE", None]  # NOT NULL violation on the second line

    with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's own error class
        advance(store, record, step_index=1, infra_id="i-9", events=bad_events)

    assert "CANARY" not in str(caught.value)
    assert store.get_request("web-1") == record
    assert [e.message for e in store.events("web-1")] == ["request created"]


def test_state_that_is_not_json_is_refused_with_a_typed_error(store: Store) -> None:
    from talprov.store import StoreError

    record = store.create_request(make_request())
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        advance(store, record, state={"when": datetime.now(UTC)})
    assert store.get_request("web-1") == record


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.create_request(make_request(), now=datetime(2026, 1, 1))


def test_request_deletion_keeps_provider_state_and_is_idempotent(store: Store) -> None:
    record = store.create_request(make_request())
    record = advance(
        store,
        record,
        stage=Stage.FAILED,
        step_index=2,
        step_name="wait_running",
        state={"instance": "i-1"},
        error="boom",
        attempts=4,
        infra_id="i-1",
        machine_uuid="uuid-1",
        addresses=["10.0.0.1"],
    )

    deleting = store.request_deletion("web-1", now=T0)
    again = store.request_deletion("web-1")

    assert deleting.stage == Stage.DEPROVISIONING
    assert (deleting.step_index, deleting.step_name, deleting.attempts) == (0, None, 0)
    assert deleting.error is None
    assert deleting.next_attempt_at is None
    assert deleting.state == {"instance": "i-1"}
    assert (deleting.infra_id, deleting.machine_uuid) == ("i-1", "uuid-1")
    assert deleting.addresses == ("10.0.0.1",)
    assert deleting.version == record.version + 1
    assert again == deleting
    assert store.events("web-1")[-1].message == "deletion requested (was failed)"
    with pytest.raises(StaleRecord):
        advance(store, record, stage=Stage.PROVISIONED)
    with pytest.raises(KeyError):
        store.request_deletion("unknown")


def test_deleting_a_gone_request_leaves_it_gone(store: Store) -> None:
    record = store.create_request(make_request())
    gone = advance(store, record, stage=Stage.GONE)
    assert store.request_deletion("web-1") == gone


def test_mark_for_deletion_sets_and_clears_the_flag(store: Store) -> None:
    record = store.create_request(make_request())
    store.mark_for_deletion("web-1")
    marked = store.get_request("web-1")
    assert marked is not None
    assert marked.marked_for_deletion
    # The flag does not race with progress writes: the old version still saves.
    assert advance(store, record, step_index=1).marked_for_deletion
    store.mark_for_deletion("web-1", marked=False)
    cleared = store.get_request("web-1")
    assert cleared is not None
    assert not cleared.marked_for_deletion
    with pytest.raises(KeyError):
        store.mark_for_deletion("unknown")


def test_forget_removes_the_request_and_records_who_and_why(store: Store) -> None:
    store.create_request(make_request())
    store.create_request(make_request("web-2"))

    store.forget_request("web-1", actor="alice", reason="machine deleted by hand")

    assert store.get_request("web-1") is None
    assert store.events("web-1") == []
    assert [r.id for r in store.list_requests(labels={"role": "worker"})] == ["web-2"]
    (entry,) = store.audit_log()
    assert (entry.request_id, entry.actor, entry.reason) == (
        "web-1",
        "alice",
        "machine deleted by hand",
    )
    assert entry.at.tzinfo is not None
    with pytest.raises(KeyError):
        store.forget_request("web-1", actor="alice", reason="again")
    assert len(store.audit_log()) == 1
    # The id can be used again afterwards.
    assert store.create_request(make_request()).stage == Stage.PENDING


def test_list_filters_by_provider_stage_and_labels(store: Store) -> None:
    specs = [
        ("a-1", "aws-dev", {"role": "worker", "pool": "a"}, Stage.PENDING),
        ("a-2", "aws-dev", {"role": "control-plane"}, Stage.PROVISIONED),
        ("p-1", "pve", {"role": "worker", "pool": "b"}, Stage.PROVISIONING),
        ("p-2", "pve", {"role": "worker", "pool": "a"}, Stage.GONE),
        ("p-3", "pve", {}, Stage.FAILED),
    ]
    for request_id, provider, labels, stage in reversed(specs):
        record = store.create_request(make_request(request_id, provider=provider, labels=labels))
        if stage != Stage.PENDING:
            advance(store, record, stage=stage)

    def ids(**filters: Any) -> list[str]:
        return [r.id for r in store.list_requests(**filters)]

    assert ids() == ["a-1", "a-2", "p-1", "p-3"]  # ordered by id, GONE left out
    assert ids(include_gone=True) == ["a-1", "a-2", "p-1", "p-2", "p-3"]
    assert ids(provider="pve") == ["p-1", "p-3"]
    assert ids(stages={Stage.GONE}) == ["p-2"]
    assert ids(stages=[Stage.PENDING, Stage.PROVISIONING]) == ["a-1", "p-1"]
    assert ids(stages=[]) == []
    assert ids(labels={"role": "worker"}) == ["a-1", "p-1"]
    assert ids(labels={"role": "worker", "pool": "a"}) == ["a-1"]
    assert ids(labels={"role": "worker", "pool": "a"}, include_gone=True) == ["a-1", "p-2"]
    assert ids(provider="pve", labels={"pool": "b"}, stages=[Stage.PROVISIONING]) == ["p-1"]
    assert ids(labels={"role": "nobody"}) == []
    assert ids(provider="unknown") == []


def test_a_deletion_during_a_busy_runner_is_never_overwritten(store: Store) -> None:
    """A runner that keeps writing from the records save_progress returns must hit
    StaleRecord once a deletion lands, never write PROVISIONING over it."""
    record = store.create_request(make_request())
    record = advance(store, record, stage=Stage.PROVISIONING)
    started = threading.Event()
    outcome: list[str] = []

    def runner() -> None:
        current = record
        try:
            for _ in range(2000):
                current = advance(store, current, step_index=current.step_index + 1)
                started.set()
            outcome.append("finished without noticing")
        except StaleRecord:
            outcome.append("stale")
        finally:
            started.set()

    thread = threading.Thread(target=runner)
    thread.start()
    started.wait(timeout=30)
    deleting = store.request_deletion("web-1")
    thread.join(timeout=60)

    final = store.get_request("web-1")
    assert final is not None
    assert final.stage == Stage.DEPROVISIONING
    assert final.version == deleting.version
    assert outcome == ["stale"]


def test_the_longest_label_key_the_rule_accepts_is_stored(store: Store) -> None:
    # Kubernetes' rule takes a key of 253 + 1 + 63 characters; the column held 255
    # and PostgreSQL refused the insert with a raw DataError.
    prefix = ".".join(["p" * 63] * 3 + ["q" * 61])
    key = f"{prefix}/{'n' * 63}"
    assert len(key) == 317
    store.create_request(make_request(labels={key: "v"}))
    found = store.get_request("web-1")
    assert found is not None
    assert dict(found.request.labels) == {key: "v"}

"""Payload-free reads: schedule, ids and counts, without ever unsealing a secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from talprov.providers.types import Stage
from talprov.store import RequestRecord, Store
from tests.unit.store.factories import make_request

T0 = datetime(2026, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)


def put(store: Store, request_id: str, stage: Stage, *, provider: str = "aws-dev",
        next_attempt_at: datetime | None = None) -> RequestRecord:
    """A stored request moved to ``stage`` with the given schedule."""
    record = store.create_request(make_request(request_id, provider=provider), now=T0)
    if stage == Stage.PENDING and next_attempt_at is None:
        return record
    fields: dict[str, Any] = {
        "stage": stage, "step_index": 0, "step_name": None, "state": {}, "error": None,
        "attempts": 0, "next_attempt_at": next_attempt_at, "step_started_at": None,
        "infra_id": None, "machine_uuid": None, "addresses": (), "events": (),
    }
    return store.save_progress(request_id, expected_version=record.version, **fields)


def test_next_attempts_gives_ids_and_times_of_the_asked_stages_only(store: Store) -> None:
    put(store, "b-wait", Stage.PROVISIONING, next_attempt_at=T0 + timedelta(seconds=30))
    put(store, "a-now", Stage.PENDING)
    put(store, "c-del", Stage.DEPROVISIONING, next_attempt_at=T0)
    put(store, "d-done", Stage.PROVISIONED)
    put(store, "e-gone", Stage.GONE)

    got = store.next_attempts([Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING])

    assert got == [("a-now", None), ("b-wait", T0 + timedelta(seconds=30)), ("c-del", T0)]
    assert all(at is None or at.tzinfo is not None for _, at in got)
    assert store.next_attempts([Stage.PROVISIONED]) == [("d-done", None)]
    assert store.next_attempts([]) == []


def test_request_ids_are_per_instance_and_leave_gone_out_unless_asked(store: Store) -> None:
    put(store, "p-1", Stage.PENDING)
    put(store, "f-1", Stage.FAILED)
    put(store, "g-1", Stage.GONE)
    put(store, "o-1", Stage.PENDING, provider="other")

    assert store.request_ids("aws-dev") == {"p-1", "f-1"}
    assert store.request_ids("aws-dev", include_gone=True) == {"p-1", "f-1", "g-1"}
    assert store.request_ids("other") == {"o-1"}
    assert store.request_ids("nobody") == set()


def test_counts_by_instance_and_stage_and_due_by_instance(store: Store) -> None:
    put(store, "p-1", Stage.PENDING)
    put(store, "p-2", Stage.PENDING)
    put(store, "w-1", Stage.PROVISIONING, next_attempt_at=T0 + timedelta(seconds=60))
    put(store, "w-2", Stage.PROVISIONING, next_attempt_at=T0)
    put(store, "g-1", Stage.GONE)
    put(store, "o-1", Stage.DEPROVISIONING, provider="other")
    put(store, "o-2", Stage.PROVISIONED, provider="other")

    assert store.count_requests() == {
        ("aws-dev", Stage.PENDING): 2,
        ("aws-dev", Stage.PROVISIONING): 2,
        ("aws-dev", Stage.GONE): 1,
        ("other", Stage.DEPROVISIONING): 1,
        ("other", Stage.PROVISIONED): 1,
    }
    working = [Stage.PENDING, Stage.PROVISIONING, Stage.DEPROVISIONING]
    # At T0 the one waiting a minute is not due; the one due exactly at T0 is.
    assert store.count_due(working, now=T0) == {"aws-dev": 3, "other": 1}
    assert store.count_due(working, now=T0 + timedelta(seconds=60)) == {
        "aws-dev": 4, "other": 1,
    }
    assert store.count_due([Stage.PROVISIONED], now=T0) == {"other": 1}
    assert store.count_due([], now=T0) == {}


def test_light_reads_work_without_the_key_that_sealed_the_requests(
    store_url: str,
) -> None:
    with Store(store_url, key="a-random-store-key-for-this-test") as sealed:
        sealed.migrate()
        put(sealed, "s-1", Stage.PENDING)
        put(sealed, "s-2", Stage.PROVISIONING, next_attempt_at=T0)
    with Store(store_url) as keyless:
        # Full records need the key: without it they come back unreadable.
        assert all(r.unreadable is not None for r in keyless.list_requests())
        assert keyless.next_attempts([Stage.PENDING, Stage.PROVISIONING]) == [
            ("s-1", None), ("s-2", T0),
        ]
        assert keyless.request_ids("aws-dev") == {"s-1", "s-2"}
        assert keyless.count_requests() == {
            ("aws-dev", Stage.PENDING): 1, ("aws-dev", Stage.PROVISIONING): 1,
        }
        assert keyless.count_due([Stage.PENDING], now=T0) == {"aws-dev": 1}


def test_label_counts_tell_requests_sealed_under_another_key_apart(store_url: str) -> None:
    """On SQLite and PostgreSQL: by the key id stored beside the secrets, and for rows
    stored before key ids were (NULL), by decrypting them."""
    ours, theirs = "our store key: 32 bytes of random-ish", "their store key, 32 bytes as well"
    sealing = {"a-ours": Store(store_url, key=ours), "b-theirs": Store(store_url, key=theirs),
               "c-plain": Store(store_url)}
    sealing["a-ours"].migrate()
    for request_id, writer in sealing.items():
        writer.create_request(make_request(request_id, labels={"team": "x"}), now=T0)
    reader = Store(store_url, key=ours)
    expected = {("x", Stage.PENDING, False): 2, ("x", Stage.PENDING, True): 1}
    assert reader.count_requests_by_label("team") == expected
    assert Store(store_url).count_requests_by_label("team") == {
        ("x", Stage.PENDING, False): 1, ("x", Stage.PENDING, True): 2}
    with reader._engine.begin() as conn:
        conn.execute(sa.text("UPDATE requests SET sealed_with = NULL"))
    assert reader.count_requests_by_label("team") == expected
    for opened in (*sealing.values(), reader):
        opened.close()


def test_label_counts_record_the_key_id_of_rows_sealed_before_it_was_stored(
    store_url: str, monkeypatch: Any
) -> None:
    """A row stored before revision 0008 is decrypted once; its key id is then
    written beside it, so the next count (every `status --watch` tick) decrypts
    nothing."""
    key = "our store key: 32 bytes of random-ish"
    with Store(store_url, key=key) as store:
        store.migrate()
        for request_id in ("a-1", "a-2"):
            store.create_request(make_request(request_id, labels={"team": "x"}), now=T0)
        with store._engine.begin() as conn:
            conn.execute(sa.text("UPDATE requests SET sealed_with = NULL"))
        decoded: list[str] = []
        real_decode = store._codec.decode

        def counting_decode(stored: str) -> str:
            decoded.append(stored)
            return real_decode(stored)

        monkeypatch.setattr(store._codec, "decode", counting_decode)
        expected = {("x", Stage.PENDING, False): 2}
        assert store.count_requests_by_label("team") == expected
        assert len(decoded) == 4  # two rows, each a machine config and a join URL
        decoded.clear()
        assert store.count_requests_by_label("team") == expected
        assert decoded == []
        with store._engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT DISTINCT sealed_with FROM requests")).all()
        assert recorded == [(store._codec.key_id,)]

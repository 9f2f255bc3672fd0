"""Pass reads and writes without payload: summaries, note_observed, records by id."""

from __future__ import annotations

from datetime import timedelta

import pytest

from talprov.providers.types import Stage
from talprov.store import StaleRecord, Store
from talprov.store.observations import RequestSummary
from tests.unit.store.factories import make_request
from tests.unit.store.test_light_queries import T0, put
from tests.unit.store.test_requests import advance


def test_summaries_carry_the_bookkeeping_of_the_asked_stages(store: Store) -> None:
    record = put(store, "b-up", Stage.PROVISIONED)
    advance(store, record, infra_id="i-1", machine_uuid="u-1", addresses=("10.0.0.5",),
            error="earlier hiccup")
    put(store, "a-wait", Stage.PROVISIONING, next_attempt_at=T0 + timedelta(seconds=5))
    put(store, "c-gone", Stage.GONE)

    got = store.summaries([Stage.PROVISIONING, Stage.PROVISIONED])

    assert [s.id for s in got] == ["a-wait", "b-up"]
    up = got[1]
    assert up == RequestSummary(
        id="b-up", provider="aws-dev", stage=Stage.PROVISIONED, version=up.version,
        next_attempt_at=None, infra_id="i-1", machine_uuid="u-1", addresses=("10.0.0.5",),
        error="earlier hiccup",
    )
    assert got[0].next_attempt_at == T0 + timedelta(seconds=5)
    assert store.summaries([]) == []


def test_note_observed_changes_only_the_given_fields(store: Store) -> None:
    record = advance(store, put(store, "n-1", Stage.PROVISIONED), infra_id="i-9",
                     state={"kept": True}, step_index=3, step_name="last")
    summary = store.summaries([Stage.PROVISIONED])[0]

    version = store.note_observed("n-1", expected_version=summary.version,
                                  addresses=["10.0.0.9"], machine_uuid="uuid-9",
                                  events=["address seen"])

    after = store.get_request("n-1")
    assert after is not None
    assert version == after.version == record.version + 1
    assert (after.addresses, after.machine_uuid) == (("10.0.0.9",), "uuid-9")
    assert (after.stage, after.state, after.step_index, after.step_name, after.infra_id) == (
        Stage.PROVISIONED, {"kept": True}, 3, "last", "i-9")
    assert after.request == record.request
    assert "address seen" in [e.message for e in store.events("n-1")]

    store.note_observed("n-1", expected_version=version, stage=Stage.FAILED, error="gone")
    failed = store.get_request("n-1")
    assert failed is not None
    assert (failed.stage, failed.error, failed.addresses) == (
        Stage.FAILED, "gone", ("10.0.0.9",))


def test_note_observed_with_a_stale_version_writes_nothing(store: Store) -> None:
    put(store, "s-1", Stage.PROVISIONED)
    summary = store.summaries([Stage.PROVISIONED])[0]
    store.request_deletion("s-1")  # another writer moves the request on
    with pytest.raises(StaleRecord):
        store.note_observed("s-1", expected_version=summary.version, stage=Stage.FAILED,
                            error="lost", events=["lost"])
    after = store.get_request("s-1")
    assert after is not None
    assert after.stage == Stage.DEPROVISIONING
    assert "lost" not in [e.message for e in store.events("s-1")]
    with pytest.raises(StaleRecord):
        store.note_observed("nobody", expected_version=1, error="x")


def test_records_by_id_span_several_queries_and_keep_the_other_filters(store: Store) -> None:
    ids = [f"r-{n:04d}" for n in range(520)]  # more than one IN list's worth
    for rid in ids:
        store.create_request(make_request(rid), now=T0)
    put(store, "z-other", Stage.PENDING, provider="other")

    got = store.list_requests(ids=[*reversed(ids), "unknown", "z-other"])
    assert [r.request.id for r in got] == [*ids, "z-other"]
    assert [r.request.id for r in store.list_requests(ids=["r-0001", "z-other"],
                                                      provider="other")] == ["z-other"]
    assert store.list_requests(ids=[]) == []


def test_summaries_and_notes_work_without_the_key(store_url: str) -> None:
    with Store(store_url, key="a-random-store-key-for-this-test") as sealed:
        sealed.migrate()
        put(sealed, "k-1", Stage.PROVISIONED)
    with Store(store_url) as keyless:
        # Full records need the key: without it they come back unreadable.
        assert all(r.unreadable is not None for r in keyless.list_requests())
        summary = keyless.summaries([Stage.PROVISIONED])[0]
        keyless.note_observed("k-1", expected_version=summary.version, addresses=["10.1.1.1"])
        assert keyless.summaries([Stage.PROVISIONED])[0].addresses == ("10.1.1.1",)


def test_pages_by_cursor_and_providers(store: Store) -> None:
    for rid, provider in (("a", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("e", "x")):
        store.create_request(make_request(rid, provider=provider), now=T0)

    def ids(**filters: object) -> list[str]:
        return [r.request.id for r in store.list_requests(**filters)]  # type: ignore[arg-type]

    assert ids(limit=2) == ["a", "b"]
    assert ids(after="b", limit=2) == ["c", "d"]
    assert ids(after="d", limit=2) == ["e"]
    assert ids(providers=["x", "z"], after="a") == ["c", "d", "e"]
    assert ids(providers=[]) == []
    assert ids(ids=["e", "c", "a", "b"], limit=2) == ["a", "b"]

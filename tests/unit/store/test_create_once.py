"""Creates that say whether they created: one winner among concurrent creators."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from talprov.errors import BeingDeleted
from talprov.providers.types import Stage
from talprov.store import StaleRecord, Store
from tests.unit.store.factories import make_request
from tests.unit.store.test_request_sets import DOCUMENT, put
from tests.unit.store.test_requests import advance

WRITERS = 6


def together(call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in ``WRITERS`` threads released at once; results or exceptions."""
    barrier = threading.Barrier(WRITERS)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            result: Any = call()
        except Exception as exc:  # collected for the assertions
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_exactly_one_concurrent_create_of_a_request_reports_created(store: Store) -> None:
    request = make_request("race-1")
    outcomes = together(lambda: store.create_or_get_request(request))
    assert sorted(created for _, created in outcomes) == [False] * (WRITERS - 1) + [True]
    assert {record.version for record, _ in outcomes} == {1}


def test_a_create_after_gone_reports_created_again(store: Store) -> None:
    request = make_request("again-1")
    record, created = store.create_or_get_request(request)
    assert created is True
    assert store.create_or_get_request(request)[1] is False
    advance(store, record, stage=Stage.GONE)
    again, created = store.create_or_get_request(request)
    assert created is True
    assert again.stage == Stage.PENDING
    assert again.version > record.version


def test_a_create_while_the_request_is_being_deleted_is_a_conflict(store: Store) -> None:
    # QA: the same body again while the deletion ran answered "200, deprovisioning"
    # and the request then vanished: the caller was told its create held.
    request = make_request("again-2")
    store.create_request(request)
    store.request_deletion("again-2")
    for body in (request, make_request("again-2", labels={"other": "body"})):
        with pytest.raises(BeingDeleted, match="again-2 is being deleted"):
            store.create_or_get_request(body)
    record = store.get_request("again-2")
    assert record is not None
    assert record.stage == Stage.DEPROVISIONING


def test_create_only_refuses_an_existing_set_even_an_equal_one(store: Store) -> None:
    assert put(store, create_only=True) == 1
    with pytest.raises(StaleRecord):
        put(store, create_only=True)
    with pytest.raises(StaleRecord):
        put(store, document={**DOCUMENT, "machine_count": 9}, create_only=True)
    record = store.get_request_set("pool")
    assert record is not None
    assert record.version == 1
    assert record.document["machine_count"] == DOCUMENT["machine_count"]


def test_exactly_one_concurrent_create_only_set_write_wins(store: Store) -> None:
    outcomes = together(lambda: put(store, create_only=True))
    assert sum(1 for o in outcomes if o == 1) == 1
    assert sum(1 for o in outcomes if isinstance(o, StaleRecord)) == WRITERS - 1

"""Creates of concurrent callers are written in shared turns (group commit), and
each keeps the outcome it would have had alone: created, the same again, or a
conflict; a turn that fails saves none of its requests and fails all its callers;
closing the store leaves no create behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from talprov.errors import Conflict
from talprov.providers.types import MachineRequest, Stage
from talprov.store import Store, StoreError
from talprov.store.creates import NewRequest
from talprov.store.errors import StoreFull
from talprov.store.guard import QueryGuard, guarded
from tests.unit.store.factories import make_request
from tests.unit.store.test_requests import advance


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in 20 s"
        time.sleep(0.002)


class Turns:
    """Records the turns of one of the store's group writes (its creates unless
    ``progress``); the first turn starts only once ``queued`` more calls wait
    behind it, so the second turn holds them all."""

    def __init__(self, store: Store, queued: int, *, progress: bool = False,
                 when_queued: Callable[[], None] | None = None) -> None:
        self.sizes: list[int] = []
        group: Any = store._progress_writes if progress else store._creates
        write = group._write_many  # the test wraps the store's own turn

        def counted(items: Sequence[Any]) -> Any:
            self.sizes.append(len(items))
            if len(self.sizes) == 1:
                wait_until(lambda: group.waiting == queued)
                if when_queued is not None:
                    when_queued()  # while they all wait, before the first turn writes
            return write(items)

        group._write_many = counted


def create_all(store: Store, requests: Sequence[MachineRequest], turns: Turns) -> list[Any]:
    """Each request created in its own thread, in order: the first alone in the
    first turn, each next one queued once the one before it waits."""
    outcomes: list[Any] = [None] * len(requests)

    def run(index: int) -> None:
        try:
            outcomes[index] = store.create_or_get_request(requests[index])
        except Exception as exc:  # collected for the assertions
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    threads[0].start()
    # The first one leads its own turn: waiting for an empty queue alone passed
    # before its thread had even queued, and the next thread could join its turn.
    wait_until(lambda: store._creates.waiting == 0 and turns.sizes == [1])
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()
        wait_until(lambda: store._creates.waiting == queued)  # noqa: B023 - used at once
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return outcomes


def test_a_shared_turn_gives_each_create_its_own_outcome(store: Store) -> None:
    live = store.create_request(make_request("live"))
    gone = store.create_request(make_request("gone"))
    advance(store, gone, stage=Stage.GONE)
    other = {"provider_data": {"instance_type": "m5.large"}}
    requests = [
        make_request("first"),
        make_request("new-1", labels={"turn": "yes"}),
        make_request("new-2", labels={"turn": "yes"}),
        make_request("new-1", labels={"turn": "yes"}),  # the same body again
        make_request("new-2", **other, labels={"turn": "yes"}),  # another body, same id
        make_request("live"),  # stored before, same body
        make_request("live", **other),  # stored before, another body
        make_request("gone", labels={"turn": "yes"}),  # gone: made afresh
    ]
    turns = Turns(store, queued=len(requests) - 1)
    outcomes = create_all(store, requests, turns)

    assert turns.sizes == [1, len(requests) - 1]
    first, new_1, new_2, again_1, clash_2, live_again, clash_live, remade = outcomes
    assert [o[1] for o in (first, new_1, new_2, again_1, live_again, remade)] == [
        True, True, True, False, False, True]
    assert isinstance(clash_2, Conflict)
    assert "new-2" in str(clash_2)
    assert isinstance(clash_live, Conflict)
    assert "live" in str(clash_live)
    assert again_1[0] == new_1[0]
    assert live_again[0].version == live.version
    assert remade[0].stage == Stage.PENDING
    assert remade[0].version > gone.version
    assert remade[0].request.labels == {"turn": "yes"}
    assert [r.id for r in store.list_requests(labels={"turn": "yes"})] == [
        "gone", "new-1", "new-2"]
    assert [e.message for e in store.events("new-1")] == ["request created"]
    assert store.events("gone")[-1].message == "request created again (the previous one was gone)"
    stored = store.get_request("new-2")
    assert stored is not None
    assert stored.request.provider_data == requests[2].provider_data
    assert stored.request.machine_config.get_secret_value() == (
        requests[2].machine_config.get_secret_value())


def test_a_failing_commit_fails_every_create_of_its_turn_and_saves_none(store: Store) -> None:
    requests = [make_request(f"doomed-{n}", labels={"n": str(n)}) for n in range(6)]
    turns = Turns(store, queued=len(requests) - 1)
    commits = {"seen": 0}

    def failing(_conn: Any) -> None:
        commits["seen"] += 1
        if commits["seen"] == 2:  # the shared turn's commit
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    sa.event.listen(store._engine, "commit", failing)
    try:
        outcomes = create_all(store, requests, turns)
    finally:
        sa.event.remove(store._engine, "commit", failing)

    assert turns.sizes == [1, 5]
    assert outcomes[0][1] is True
    for outcome in outcomes[1:]:
        assert isinstance(outcome, StoreError)
        assert "disk I/O error" in str(outcome)
    assert [r.id for r in store.list_requests()] == ["doomed-0"]
    assert store.events("doomed-3") == []
    assert store.list_requests(labels={"n": "3"}) == []
    # The lead went on: the same creates succeed now.
    assert all(store.create_or_get_request(r)[1] for r in requests[1:])


def test_a_full_sqlite_store_fails_the_whole_turn_and_recovers(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
        store.create_request(make_request("before"))
        engine: sa.Engine = store._engine
        cap = {"pages": 0}

        def capped(dbapi_connection: Any, _record: Any) -> None:
            if cap["pages"]:
                dbapi_connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

        sa.event.listen(engine, "connect", capped)
        engine.dispose()
        with engine.connect() as conn:
            cap["pages"] = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        engine.dispose()
        requests = [make_request(f"big-{n}", labels={"pad": "x" * 1000, "n": str(n)})
                    for n in range(12)]
        turns = Turns(store, queued=len(requests) - 1)
        outcomes = create_all(store, requests, turns)
        assert turns.sizes == [1, 11]
        assert all(isinstance(o, StoreFull) for o in outcomes[1:]), outcomes
        assert all(store.get_request(r.id) is None for r in requests[1:])
        cap["pages"] = 0
        engine.dispose()
        assert store.create_or_get_request(requests[5])[1] is True


def test_closing_the_store_loses_no_create_that_waits(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    requests = [make_request(f"closing-{n}") for n in range(5)]
    closed: list[bool] = []

    def close() -> None:
        store.close()
        closed.append(True)

    # Closed from the first turn, once the others wait: a thread polling for
    # them all waiting could miss that moment (the turn takes them at once) and
    # the store was then never closed (a warning; the test passed anyway).
    turns = Turns(store, queued=len(requests) - 1, when_queued=close)
    outcomes = create_all(store, requests, turns)
    assert closed
    assert [created for _, created in outcomes] == [True] * len(requests)
    with Store(store_url) as reopened:
        assert [r.id for r in reopened.list_requests()] == [r.id for r in requests]


def test_a_create_past_its_deadline_while_waiting_is_not_written(store: Store) -> None:
    requests = [make_request("leader"), make_request("late")]
    release = threading.Event()
    leading = threading.Event()
    write = store._create_turn

    def held(creates: Sequence[NewRequest]) -> Any:
        leading.set()
        assert release.wait(20)
        return write(creates)

    store._create_turn = held  # type: ignore[method-assign]
    outcome: dict[str, Any] = {}
    leader = threading.Thread(target=lambda: outcome.update(
        leader=store.create_or_get_request(requests[0])))
    leader.start()
    # The leader writes its turn: an empty queue alone was also true before its
    # thread had queued, and the late create would have led the turn itself.
    assert leading.wait(20)
    with guarded(QueryGuard(0.0)), pytest.raises(StoreError, match="deadline"):
        store.create_or_get_request(requests[1])
    release.set()
    leader.join(30)
    assert outcome["leader"][1] is True
    assert store.get_request("late") is None

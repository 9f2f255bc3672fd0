"""Store queries of an API call stop at their deadline or when cancelled, and a
label filter is one query whatever the number of labels (issue 15, hole 1)."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event

from talprov.store import Store, StoreError
from talprov.store.guard import QueryGuard, guarded
from tests.unit.store.factories import make_request

# A statement that runs for far longer than any test waits.
SLOW_SQL = {
    "sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
              "WHERE x < 400000000) SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(30)",
}


def _run_slow(store: Store, outcome: dict[str, Any]) -> None:
    started = time.monotonic()
    try:
        with store._read() as conn:
            conn.exec_driver_sql(SLOW_SQL[conn.dialect.name])
        outcome["result"] = "finished"
    except StoreError as exc:
        outcome["result"] = str(exc)
    outcome["seconds"] = time.monotonic() - started


def _in_thread(store: Store, guard: QueryGuard) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    with guarded(guard):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(_run_slow, store, outcome), daemon=True)
    thread.start()
    return thread, outcome


def test_a_guarded_query_stops_at_its_deadline(store: Store) -> None:
    thread, outcome = _in_thread(store, QueryGuard(0.3))
    thread.join(10)
    assert not thread.is_alive(), "the query ran on past its deadline"
    assert outcome["result"] != "finished"
    assert outcome["seconds"] < 5


def test_cancelling_the_guard_stops_the_running_query(store: Store) -> None:
    guard = QueryGuard(600)
    thread, outcome = _in_thread(store, guard)
    time.sleep(0.3)
    assert thread.is_alive()
    guard.cancel()
    thread.join(10)
    assert not thread.is_alive(), "cancel did not reach the running query"
    assert outcome["result"] != "finished"


def test_a_cancel_while_the_transaction_starts_stops_its_query(store: Store) -> None:
    # The cancel comes after the transaction's own deadline check and before the
    # statement runs (connecting, BEGIN, SET LOCAL): PostgreSQL's cancel of an
    # idle connection is lost, and the statement ran on to its statement_timeout
    # (the guard's whole deadline). It must not start.
    guard = QueryGuard(600)

    def cancel_before_the_slow_one(_conn: Any, _cursor: Any, statement: str,
                                   *_args: Any) -> None:
        if statement not in SLOW_SQL.values():
            guard.cancel()

    event.listen(store._engine, "before_cursor_execute", cancel_before_the_slow_one)
    try:
        thread, outcome = _in_thread(store, guard)
        thread.join(10)
    finally:
        event.remove(store._engine, "before_cursor_execute", cancel_before_the_slow_one)
    assert not thread.is_alive(), "a cancel before the statement did not stop it"
    assert guard.cancelled
    assert outcome["result"] != "finished"


def test_queries_without_a_guard_are_not_limited(store: Store) -> None:
    with store._read() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    # A guard's timeout does not stay on the pooled connection afterwards.
    thread, _outcome = _in_thread(store, QueryGuard(0.01))
    thread.join(10)
    with store._read() as conn:
        sql = {"sqlite": "SELECT count(*) FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL "
                         "SELECT x + 1 FROM n WHERE x < 200000) SELECT x FROM n)",
               "postgresql": "SELECT pg_sleep(0.1), 200000"}[conn.dialect.name]
        assert 200000 in conn.exec_driver_sql(sql).one()


def test_a_guard_past_its_deadline_refuses_new_transactions(store: Store) -> None:
    now = [0.0]
    with guarded(QueryGuard(1, clock=lambda: now[0])):
        store.list_requests()
        now[0] = 2.0
        with pytest.raises(StoreError, match="deadline"):
            store.list_requests()


def test_many_label_filters_are_one_scan_of_the_labels(store: Store) -> None:
    labels = {f"k{n}": f"v{n}" for n in range(16)}
    store.create_request(make_request("all-1", labels=labels))
    store.create_request(make_request("some-1", labels=dict(list(labels.items())[:15])))
    store.create_request(make_request("other-1", labels={**labels, "k3": "x"}))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store._engine, "before_cursor_execute", seen)
    try:
        found = store.list_requests(labels=labels)
    finally:
        event.remove(store._engine, "before_cursor_execute", seen)
    assert [r.request.id for r in found] == ["all-1"]
    (select,) = [s for s in statements if "request_labels" in s]
    assert select.upper().count("FROM REQUEST_LABELS") == 1
    assert select.upper().count("SELECT") == 2  # the list, and one label subquery
    assert [r.request.id for r in store.list_requests(labels={"k0": "v0", "k15": "v15"})] \
        == ["all-1", "other-1"]
    assert {r.request.id for r in store.list_requests(labels={"k3": "v3"})} == {"all-1",
                                                                                 "some-1"}


def test_the_label_subquery_compiles_without_per_label_subqueries() -> None:
    from sqlalchemy.dialects import postgresql

    from talprov.store.store import _ids_with_labels

    sql = str(_ids_with_labels({f"k{n}": "v" for n in range(10)}).compile(
        dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    assert sql.upper().count("SELECT") == 1

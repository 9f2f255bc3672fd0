"""The status page's store reads: pages, changes since a moment, error and lease summaries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from talprov.providers.types import MachineRequest, Stage
from talprov.store.browse import BrowseFilter
from talprov.store.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'state.db'}") as s:
        s.migrate()
        yield s


def add(store: Store, request_id: str, provider: str = "a", at: datetime = T0,
        **labels: str) -> None:
    store.create_request(MachineRequest(id=request_id, provider=provider,
                                        talos_version="v1.11.5", labels=labels), now=at)


def fail(store: Store, request_id: str, error: str, at: datetime,
         step_started_at: datetime | None = None) -> None:
    record = store.get_request(request_id)
    assert record is not None
    store.save_progress(
        request_id, expected_version=record.version, stage=Stage.PROVISIONING, step_index=0,
        step_name="ensure-machine", state={}, error=error, attempts=1, next_attempt_at=None,
        step_started_at=step_started_at, infra_id=None, machine_uuid=None, addresses=(), events=[],
        now=at,
    )


def test_changed_since_reads_through_the_updated_at_index(store: Store) -> None:
    for n in range(20):
        add(store, f"r-{n:02d}", at=T0 + timedelta(seconds=n))
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "updated_at >=" in statement:
            statements.append((statement, parameters))

    engine = store._engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        changed = store.changed_since(T0 + timedelta(seconds=17))
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert [row.id for row in changed] == ["r-17", "r-18", "r-19"]
    assert statements, "changed_since ran no SELECT on updated_at"
    statement, parameters = statements[0]
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    details = " ".join(str(row[-1]) for row in plan)
    # A search through the index, not a scan of every request.
    assert "ix_requests_updated_at" in details, details
    assert "SCAN requests" not in details, details


def test_browse_filters_pages_and_hides_other_providers(store: Store) -> None:
    for n in range(7):
        add(store, f"web-{n}", provider="a" if n < 5 else "b", team="blue" if n % 2 else "red")
    rows, total = store.browse_requests(BrowseFilter(labels={"team": "blue"}), limit=2)
    assert (total, [r.id for r in rows]) == (3, ["web-1", "web-3"])
    rows, total = store.browse_requests(BrowseFilter(labels={"team": "blue"}), offset=2, limit=2)
    assert (total, [r.id for r in rows]) == (3, ["web-5"])
    rows, total = store.browse_requests(BrowseFilter(providers=["b"]))
    assert (total, [r.id for r in rows]) == (2, ["web-5", "web-6"])
    assert rows[0].labels == {"team": "blue"}
    rows, total = store.browse_requests(BrowseFilter(text="b-%"))
    assert total == 0  # LIKE wildcards in the search text are taken literally
    rows, _ = store.browse_requests(BrowseFilter(text="b-4"))
    assert [r.id for r in rows] == ["web-4"]
    store.request_deletion("web-0")
    assert store.browse_requests(BrowseFilter(stage=Stage.PENDING))[1] == 6


def test_provider_errors_name_the_newest_error_and_since_when(store: Store) -> None:
    for n in range(3):
        add(store, f"x-{n}")
    add(store, "y-0", provider="b")
    fail(store, "x-0", "ensure-machine: quota", T0 + timedelta(minutes=1))
    fail(store, "x-2", "ensure-machine: capacity", T0 + timedelta(minutes=5))
    found = store.provider_errors()
    assert set(found) == {"a"}
    summary = found["a"]
    assert (summary.latest, summary.latest_at) == ("ensure-machine: capacity",
                                                   T0 + timedelta(minutes=5))
    assert (summary.first_at, summary.requests) == (T0 + timedelta(minutes=1), 2)
    # Retried again and again, a step's start stays: the trouble began then.
    fail(store, "y-0", "ensure-machine: timeout", T0 + timedelta(minutes=30),
         step_started_at=T0 + timedelta(seconds=10))
    assert store.provider_errors()["b"].first_at == T0 + timedelta(seconds=10)


def test_lease_holders_and_recent_events(store: Store) -> None:
    for n in range(3):
        add(store, f"c-{n}", "a", T0, **{"talprov.cluster": "prod"})
    add(store, "loose")
    now = datetime.now(UTC)
    assert store.claim("c-0", owner="w1", ttl=60, now=now)
    assert store.claim("c-1", owner="w1", ttl=60, now=now)
    assert store.claim("loose", owner="w2", ttl=60, now=now - timedelta(minutes=5))
    holders = store.lease_holders(now=now)
    assert [(h.owner, h.requests) for h in holders] == [("w1", 2)]
    events = store.recent_events({"talprov.cluster": "prod"}, limit=2)
    assert [e[0] for e in events] == ["c-2", "c-1"]
    assert store.newest_change() == T0

"""Pooled PostgreSQL connections: checked without a round trip, replaced when the
server ended them (the engine's checkout check instead of pool_pre_ping's SELECT 1
per transaction; see talprov/store/engine.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from talprov.providers.types import MachineRequest
from talprov.store import Store
from talprov.store.engine import RECYCLE_SECONDS
from tests.emulators.postgres import PostgresServer


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    opened = Store(postgres_url)
    opened.migrate()
    opened.create_request(MachineRequest(id="r-1", provider="p", talos_version="v1.13.9"))
    yield opened
    opened.close()


def test_a_transaction_costs_no_ping_round_trip(pg_store: Store,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine = pg_store._engine
    pings: list[object] = []
    dialect: Any = engine.dialect
    real_ping = dialect.do_ping

    def counted_ping(connection: object) -> bool:
        pings.append(connection)
        return bool(real_ping(connection))

    monkeypatch.setattr(dialect, "do_ping", counted_ping)
    for _ in range(20):
        assert pg_store.lease_holder("r-1") is None
    assert pings == []  # pool_pre_ping pinged once per transaction: 20
    assert engine.pool._recycle == RECYCLE_SECONDS


def _end_backends(server: PostgresServer, database: str) -> None:
    """Terminate every backend of ``database`` and wait until they are gone."""
    import psycopg

    deadline = time.monotonic() + 10
    with psycopg.connect(host=str(server.socket_dir), port=server.tcp_port or 5432,
                         user="talprov", dbname="postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        while time.monotonic() < deadline:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                (database,)).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.02)
    raise AssertionError(f"backends of {database} still there")


def test_connections_the_server_ended_are_replaced_before_use(
    pg_store: Store, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A restarted server (or terminated backends) leaves the pool's connections
    dead; the first transaction after it must not fail (it would with neither
    pool_pre_ping nor the checkout check: StoreError 'terminating connection')."""
    database = sa.make_url(postgres_url).database
    assert database is not None
    for _ in range(3):
        # Several pooled connections, so that more than one has to be replaced.
        with pg_store._engine.connect() as one, pg_store._engine.connect() as two:
            one.exec_driver_sql("SELECT 1")
            two.exec_driver_sql("SELECT 1")
        _end_backends(postgres_server, database)
        assert pg_store.lease_holder("r-1") is None
        assert pg_store.claim("r-1", owner="w", ttl=60)
        pg_store.release("r-1", owner="w")

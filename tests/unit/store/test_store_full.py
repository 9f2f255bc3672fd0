"""A full store raises StoreFull (a StoreError), reads go on, writes recover.

SQLite's ``PRAGMA max_page_count`` caps the database file, which SQLite then
reports exactly as a full disk (SQLITE_FULL): it stands in here for a full
filesystem, which tests/chaos/test_store_disk_full.py fills for real.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from talprov.store import Store, StoreError
from talprov.store.engine import _is_disk_full
from talprov.store.errors import StoreFull
from tests.unit.store.factories import make_request


def test_a_capped_sqlite_store_raises_store_full_and_recovers(sqlite_url: str) -> None:
    cap = {"pages": 0}  # 0: no cap

    with Store(sqlite_url) as store:
        store.migrate()
        store.create_request(make_request("first"))

        def capped(dbapi_connection: Any, _record: Any) -> None:
            if cap["pages"]:
                dbapi_connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

        engine: sa.Engine = store._engine  # the test reaches the pool
        sa.event.listen(engine, "connect", capped)
        engine.dispose()  # new connections get the cap
        pages = engine.connect().exec_driver_sql("PRAGMA page_count").scalar_one()
        cap["pages"] = int(pages)
        engine.dispose()
        caught: list[StoreError] = []
        for n in range(200):
            try:
                store.create_request(make_request(f"more-{n}", labels={"pad": "x" * 1000}))
            except StoreError as exc:
                caught.append(exc)
                break
        assert caught, "200 writes fitted under the cap"
        assert isinstance(caught[0], StoreFull), caught
        assert "full" in str(caught[0])
        assert store.get_request("first") is not None  # reads keep working
        cap["pages"] = 0
        engine.dispose()
        store.create_request(make_request("after"))
        assert store.get_request("after") is not None


def test_postgresql_disk_full_is_recognised() -> None:
    assert _is_disk_full(psycopg.errors.DiskFull("could not extend file"))
    assert not _is_disk_full(psycopg.errors.AdminShutdown("terminating connection"))
    assert not _is_disk_full(None)

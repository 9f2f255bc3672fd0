"""The inventory's SQLite file: its schema, created private, and transactions.

:class:`InventoryFile` is what :class:`talprov.baremetal.inventory.Inventory`
stands on: it opens the file (mode 0600: it holds machine configs waiting to be
fetched and BMC password references), brings an older file's schema up to
date, and gives each change one ``BEGIN IMMEDIATE`` transaction, which is what
makes the inventory's conditional updates safe between the reconciler and the
boot server in another process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from talprov.baremetal.records import BmcInfo, BootPlan, InventoryMachine, MachineStatus
from talprov.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    name TEXT PRIMARY KEY,
    uuid TEXT UNIQUE,
    macs TEXT NOT NULL DEFAULT '[]',
    bmc TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}',
    cpus INTEGER,
    memory_mib INTEGER,
    disk_gb INTEGER,
    state TEXT NOT NULL,
    cordoned INTEGER NOT NULL DEFAULT 0,
    request_id TEXT UNIQUE,
    owner TEXT,
    boot TEXT,
    config TEXT,
    token_sha256 TEXT,
    script_remote TEXT,
    script_fetched_at REAL,
    kernel_fetched_at REAL,
    config_fetched_at REAL,
    wipe_started_at REAL,
    wipe_reported_at REAL,
    last_seen_at REAL,
    cordon_reason TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    machine TEXT,
    uuid TEXT,
    mac TEXT,
    remote TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_event ON audit (event);
"""


class InventoryFile:
    """One inventory file: connections, transactions and rows read as records."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        """Open (or create, mode 0600) the file at ``path``. Raises ``ConfigError``
        naming ``inventory`` when its directory does not exist. Idempotent."""
        self.path = Path(path)
        self.clock = clock
        if not self.path.parent.is_dir():
            # Never created here: a typo in the path would otherwise give an empty
            # inventory somewhere unexpected (as root, for the boot server).
            raise ConfigError("inventory", f"directory {self.path.parent} does not exist "
                              "(create it, or correct the path)")
        if not self.path.exists():
            # Created private: it holds configs waiting to be fetched.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self._connect() as db:
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(machines)")}
            if "script_remote" not in columns:  # an inventory from before address binding
                db.execute("ALTER TABLE machines ADD COLUMN script_remote TEXT")
            if "cordon_reason" not in columns:  # from before cordons said why
                db.execute("ALTER TABLE machines ADD COLUMN cordon_reason TEXT NOT NULL"
                           " DEFAULT ''")

    def __repr__(self) -> str:
        return f"Inventory({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- reading ------------------------------------------------------------

    def _rows(self, where: str = "1=1", args: Sequence[Any] = ()) -> list[InventoryMachine]:
        db = self._connect()
        try:
            rows = db.execute(f"SELECT * FROM machines WHERE {where} ORDER BY name",  # noqa: S608
                              tuple(args)).fetchall()
        finally:
            db.close()
        return [_machine(r) for r in rows]


def _machine(row: sqlite3.Row) -> InventoryMachine:
    bmc_raw = json.loads(row["bmc"] or "{}")
    return InventoryMachine(
        name=row["name"], uuid=row["uuid"], macs=tuple(json.loads(row["macs"])),
        bmc=BmcInfo(**bmc_raw), labels=json.loads(row["labels"]), cpus=row["cpus"],
        memory_mib=row["memory_mib"], disk_gb=row["disk_gb"],
        status=MachineStatus(row["state"]), cordoned=bool(row["cordoned"]),
        request_id=row["request_id"], owner=row["owner"],
        boot=BootPlan.from_json(row["boot"]) if row["boot"] else None,
        has_config=row["config"] is not None,
        script_fetched_at=row["script_fetched_at"], kernel_fetched_at=row["kernel_fetched_at"],
        config_fetched_at=row["config_fetched_at"], wipe_started_at=row["wipe_started_at"],
        wipe_reported_at=row["wipe_reported_at"], last_seen_at=row["last_seen_at"],
        cordon_reason=row["cordon_reason"],
    )

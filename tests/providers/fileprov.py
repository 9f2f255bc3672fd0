"""A provider double that keeps its "cloud" in its own SQLite file.

It runs out of process (workers load it through a real ``talprov.providers`` entry
point written by the test fixtures), so crash tests can SIGKILL a worker and a
fresh process sees the same machines. It follows the contract like a real driver:
ensure-machine looks up by request id before creating, waiting reads the pass's
observation, deprovision treats "already gone" as success.

Knobs (config): ``boot_listings`` (listings before a machine runs),
``fail_creates`` (every create raises CapacityError), ``pause_after_create`` (a
marker file: after creating a machine the step writes it and blocks, so a test
can kill the process exactly between the create and the state write),
``pause_in_listing`` (a marker file: the listing writes it and blocks, as a cloud
that never answers), ``batch`` (offer ``run_batch`` for ensure-machine),
``api_secret`` (a credential, used as a canary in tests).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from talprov.providers.errors import AuthError, CapacityError
from talprov.providers.ownership import ownership_tags
from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import Health, Machine, MachineState, Owner, Retry, StepResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    infra_id TEXT PRIMARY KEY,
    installation TEXT NOT NULL,
    instance TEXT NOT NULL,
    request_id TEXT NOT NULL,
    size TEXT NOT NULL,
    zone TEXT,
    user_data TEXT NOT NULL,
    listings INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (name TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


class FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="SQLite file holding this fake cloud.")
    boot_listings: int = Field(default=1, ge=0)
    fail_creates: bool = False
    pause_after_create: str | None = None
    pause_in_listing: str | None = None
    batch: bool = False
    api_secret: SecretStr | None = None


class FileData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: str = Field(default="small", pattern="^(small|medium|large)$")
    zone: str | None = None


class FileState(ProviderState):
    created_by_me: bool = False


class Cloud:
    """The fake cloud's database, shared by every process that opens the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self.connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def count_call(self, db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "INSERT INTO calls(name, count) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET count = count + 1",
            (name,),
        )

    def calls(self, name: str) -> int:
        with self.connect() as db:
            row = db.execute("SELECT count FROM calls WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def machines(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM machines ORDER BY infra_id")]


class FileProvider:
    """The provider double; see the module docstring."""

    type_name: ClassVar[str] = "file"
    config_model: ClassVar[type[BaseModel]] = FileConfig
    data_model: ClassVar[type[BaseModel]] = FileData
    state_model: ClassVar[type[ProviderState]] = FileState

    def __init__(self, name: str, config: FileConfig, runtime: Runtime) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.cloud = Cloud(config.path)

    def steps(self) -> Sequence[Step]:
        batch = self._ensure_batch if self.config.batch else None
        return (
            Step("ensure-machine", self._ensure, batch),
            Step("wait-running", self._wait_running),
        )

    def _find(self, db: sqlite3.Connection, owner: Owner, request_id: str) -> str | None:
        row = db.execute(
            "SELECT infra_id FROM machines WHERE installation=? AND instance=? AND request_id=?",
            (owner.installation, owner.instance, request_id),
        ).fetchone()
        return str(row[0]) if row else None

    def _ensure(self, ctx: StepContext[FileData, FileState]) -> StepResult:
        return self._ensure_batch([ctx])[0]

    def _ensure_batch(self, ctxs: Sequence[StepContext[FileData, FileState]]) -> list[StepResult]:
        with self.cloud.connect() as db:
            self.cloud.count_call(db, "ensure")
            for ctx in ctxs:
                request = ctx.request
                existing = self._find(db, ctx.owner, request.id)
                if existing is not None:
                    ctx.state.infra_id = existing
                    ctx.state.machine_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, existing))
                    continue
                if self.config.fail_creates:
                    self.cloud.count_call(db, "create_failed")
                    raise CapacityError("no capacity in fake zone")
                infra_id = f"fm-{uuid.uuid4().hex[:12]}"
                tags = ownership_tags(ctx.owner, request)
                db.execute(
                    "INSERT INTO machines VALUES (?,?,?,?,?,?,?,0,?)",
                    (
                        infra_id, tags["talprov-installation"], tags["talprov-instance"],
                        request.id, ctx.data.size, ctx.data.zone,
                        request.machine_config.get_secret_value(),
                        datetime.now(UTC).isoformat(),
                    ),
                )
                self.cloud.count_call(db, "create")
                ctx.event(f"created {infra_id}")
                if self.config.pause_after_create:
                    # The machine exists but the runner has not stored it yet: the
                    # crash test kills us here.
                    Path(self.config.pause_after_create).write_text(infra_id)
                    while True:
                        time.sleep(1)
                ctx.state.infra_id = infra_id
                ctx.state.machine_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, infra_id))
                ctx.state.created_by_me = True
        return [None] * len(ctxs)

    def _wait_running(self, ctx: StepContext[FileData, FileState]) -> StepResult:
        machine = ctx.observed
        if machine is not None and machine.state == MachineState.RUNNING:
            ctx.state.addresses = list(machine.addresses)
            return None
        return Retry(after=0.05, reason="waiting for the machine to run")

    def deprovision(self, ctx: StepContext[Any, FileState]) -> StepResult:
        """Delete the request's machine; gone is success."""
        with self.cloud.connect() as db:
            self.cloud.count_call(db, "delete")
            db.execute(
                "DELETE FROM machines WHERE installation=? AND instance=? AND request_id=?",
                (ctx.owner.installation, ctx.owner.instance, ctx.request.id),
            )
        return None

    def list_machines(self, owner: Owner) -> list[Machine]:
        """One query for all of this owner's machines; counts the call."""
        if self.config.api_secret is not None and self.config.api_secret.get_secret_value() == "":
            raise AuthError("empty api_secret")
        if self.config.pause_in_listing:
            Path(self.config.pause_in_listing).write_text("listing")
            while True:
                time.sleep(1)
        machines = []
        with self.cloud.connect() as db:
            self.cloud.count_call(db, "list_machines")
            db.execute(
                "UPDATE machines SET listings = listings + 1 WHERE installation=? AND instance=?",
                (owner.installation, owner.instance),
            )
            rows = db.execute(
                "SELECT infra_id, request_id, listings, created_at FROM machines "
                "WHERE installation=? AND instance=?",
                (owner.installation, owner.instance),
            ).fetchall()
        for infra_id, request_id, listings, created_at in rows:
            running = listings > self.config.boot_listings
            machines.append(
                Machine(
                    infra_id=infra_id,
                    state=MachineState.RUNNING if running else MachineState.PENDING,
                    request_id=request_id,
                    machine_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, infra_id)),
                    addresses=("192.0.2.10",) if running else (),
                    created_at=datetime.fromisoformat(created_at),
                )
            )
        return machines

    def health(self) -> Health:
        return Health(ok=Path(self.config.path).exists())

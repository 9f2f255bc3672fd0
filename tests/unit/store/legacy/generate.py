"""Writes the legacy store dumps next to this file with the hand-written
migration runner of talprov 0.1 (schema versions 1, 2 and 3), as SQL.

Run once, before that runner was replaced by Alembic:
    python -m tests.unit.store.legacy.generate
The dumps are the fixtures; this script leaves with the runner it needs.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from talprov.providers.types import MachineRequest
from talprov.store import Store
from talprov.store.crypto import SecretCodec
from talprov.store.engine import create_store_engine
from talprov.store.migrations import migrate
from talprov.store.schema import clusters
from tests.emulators.postgres import start_postgres

KEY = "legacy-fixture-key"
HERE = Path(__file__).parent


def _request(i: int) -> MachineRequest:
    return MachineRequest.model_validate({
        "id": f"legacy-{i}", "provider": "fake", "talos_version": "v1.11.5",
        "labels": {"role": "worker", "n": str(i)},
        "machine_config": f"version: v1alpha1\nmachine:\n  token: secret-{i}\n",
        "join": {"api_url": f"https://omni.example/join?token=jt-{i}", "mode": "documents"},
    })


def _fill(url: str, version: int) -> None:
    engine, _lock = create_store_engine(url)
    migrate(engine, target=version)
    store = Store(url, key=KEY)
    for i in range(3):
        store.create_request(_request(i))
    record = store.get_request("legacy-1")
    assert record is not None
    store.request_deletion("legacy-2")
    store.put_cluster("prod", {"name": "prod", "sets": [{"name": "workers", "size": 2}]})
    codec = SecretCodec(KEY)
    created = datetime(2026, 2, 1, tzinfo=UTC)
    template = _request(9)
    document = {
        "kind": "MachineRequestSet",
        "template": template.model_dump(mode="json", exclude={"machine_config", "join"}),
        "join_options": {"mode": "documents"},
        "machine_count": 2, "deleting": False, "fingerprint": "f" * 64,
    }
    if version == 1:
        old = {
            **document,
            "machine_config": codec.encode("set config secret"),
            "join_api_url": codec.encode("https://omni.example/join?token=set"),
            "created_at": created.isoformat(), "updated_at": created.isoformat(),
        }
        with engine.begin() as conn:
            conn.execute(clusters.insert().values(
                name="machine-request-set/pool", spec=json.dumps(old), updated_at=created))
    else:
        store.put_request_set("pool", document, machine_config="set config secret",
                              join_url="https://omni.example/join?token=set", now=created)
    store.close()
    engine.dispose()


def main() -> None:
    for version in (1, 2, 3):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state.db"
            _fill(f"sqlite:///{path}", version)
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode = DELETE")
            (HERE / f"sqlite_v{version}.sql").write_text("\n".join(conn.iterdump()) + "\n")
            conn.close()
    workdir = Path(tempfile.mkdtemp(prefix="talprov-pg-", dir="/tmp"))
    server = start_postgres(workdir)
    try:
        for version in (1, 2, 3):
            server.admin_execute(f"CREATE DATABASE legacy{version}")
            _fill(server.url(f"legacy{version}"), version)
            dump = subprocess.run(
                ["pg_dump", "-h", str(server.socket_dir), "-U", "talprov", "--inserts",
                 "--no-owner", "--no-privileges", f"legacy{version}"],
                check=True, capture_output=True, text=True).stdout
            (HERE / f"postgresql_v{version}.sql").write_text(dump)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

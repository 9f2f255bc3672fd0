"""Request sets in their own table: round trip, sealed secrets, versions, and the
upgrade from schema version 1, where the service kept them among the clusters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from talprov.store import StaleRecord, Store, StoreError
from talprov.store.crypto import SecretCodec
from talprov.store.engine import create_store_engine
from talprov.store.schema import clusters
from talprov.store.upgrade import head_revision, status, upgrade
from tests.unit.store.factories import CANARY_CONFIG, CANARY_JOIN
from tests.unit.store.test_encryption import SECRET_MARKERS, database_bytes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROW_TIME = datetime(2026, 3, 2, tzinfo=UTC)
DOCUMENT: dict[str, Any] = {
    "kind": "MachineRequestSet",
    "template": {"provider": "aws-dev", "labels": {"role": "worker"}},
    "machine_count": 3,
    "deleting": False,
}


def put(store: Store, name: str = "pool", **overrides: Any) -> int:
    fields: dict[str, Any] = {
        "document": DOCUMENT,
        "machine_config": CANARY_CONFIG,
        "join_url": CANARY_JOIN,
        "now": T0,
    }
    fields.update(overrides)
    document = fields.pop("document")
    return store.put_request_set(name, document, **fields)


def raw_set_columns(url: str) -> list[tuple[str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT machine_config, join_api_url FROM request_sets"))
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


def test_round_trip_list_and_delete(store: Store) -> None:
    assert store.get_request_set("pool") is None
    assert put(store) == 1
    assert put(store, "edge", join_url=None, machine_config="") == 1

    record = store.get_request_set("pool")
    assert record is not None
    assert record.name == "pool"
    assert record.document == DOCUMENT
    assert record.machine_config.get_secret_value() == CANARY_CONFIG
    assert record.join_url is not None
    assert record.join_url.get_secret_value() == CANARY_JOIN
    assert (record.created_at, record.updated_at, record.version) == (T0, T0, 1)
    for marker in SECRET_MARKERS:
        assert marker not in repr(record)
    edge = store.get_request_set("edge")
    assert edge is not None
    assert edge.join_url is None
    assert edge.machine_config.get_secret_value() == ""
    assert store.list_request_sets() == ["edge", "pool"]

    store.delete_request_set("edge")
    store.delete_request_set("edge")  # idempotent
    assert store.get_request_set("edge") is None
    assert store.list_request_sets() == ["pool"]
    # Request sets are not clusters, and clusters are not request sets.
    assert store.list_clusters() == []


def test_same_content_is_idempotent_and_a_change_bumps_the_version(store: Store) -> None:
    assert put(store) == 1
    # Fernet output differs per encryption, so this also checks the comparison decrypts.
    assert put(store, now=T0 + timedelta(hours=1)) == 1
    record = store.get_request_set("pool")
    assert record is not None
    assert (record.updated_at, record.version) == (T0, 1)

    later = T0 + timedelta(hours=2)
    assert put(store, document={**DOCUMENT, "machine_count": 5}, now=later) == 2
    assert put(store, document={**DOCUMENT, "machine_count": 5}, join_url=None) == 3
    assert put(store, document={**DOCUMENT, "machine_count": 5}, join_url=None,
               machine_config="other") == 4
    record = store.get_request_set("pool")
    assert record is not None
    assert record.document["machine_count"] == 5
    assert record.join_url is None
    assert record.machine_config.get_secret_value() == "other"
    assert (record.created_at, record.version) == (T0, 4)


def test_a_stale_version_is_refused_and_writes_nothing(store: Store) -> None:
    with pytest.raises(StaleRecord, match="pool does not exist"):
        put(store, expected_version=1)
    assert store.get_request_set("pool") is None
    assert put(store, expected_version=0) == 1
    with pytest.raises(StaleRecord, match="version 1, not version 0"):
        put(store, document={**DOCUMENT, "machine_count": 9}, expected_version=0)
    assert put(store, document={**DOCUMENT, "machine_count": 4}, expected_version=1) == 2

    with pytest.raises(StaleRecord, match="version 2, not version 1"):
        put(store, document={**DOCUMENT, "machine_count": 9}, expected_version=1)
    # A retry of the write that made version 2 is not stale: it changes nothing.
    assert put(store, document={**DOCUMENT, "machine_count": 4}, expected_version=1) == 2
    with pytest.raises(StaleRecord, match="version 2, not 1"):
        store.delete_request_set("pool", expected_version=1)
    record = store.get_request_set("pool")
    assert record is not None
    assert (record.document["machine_count"], record.version) == (4, 2)

    store.delete_request_set("pool", expected_version=2)
    assert store.get_request_set("pool") is None
    store.delete_request_set("pool", expected_version=2)  # gone already: done


def test_two_writers_with_the_same_version_one_wins(store: Store) -> None:
    put(store)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(count: int) -> None:
        barrier.wait()
        try:
            put(store, document={**DOCUMENT, "machine_count": count}, expected_version=1)
            outcomes.append("won")
        except StaleRecord:
            outcomes.append("stale")

    threads = [threading.Thread(target=write, args=(n,)) for n in (7, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stale", "won"]
    record = store.get_request_set("pool")
    assert record is not None
    assert record.version == 2


def test_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="1 to 255"):
        put(store, "")
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        put(store, document={"when": T0})
    assert store.list_request_sets() == []


def test_with_a_key_set_secrets_never_reach_the_file(sqlite_url: str) -> None:
    with Store(sqlite_url, key="set key") as store:
        store.migrate()
        put(store)
        raw = database_bytes(sqlite_url)
        assert b"MachineRequestSet" in raw  # the probe sees what was written
        for marker in SECRET_MARKERS:
            assert marker.encode() not in raw
        record = store.get_request_set("pool")
    assert record is not None
    assert record.machine_config.get_secret_value() == CANARY_CONFIG
    for marker in SECRET_MARKERS:
        assert marker.encode() not in database_bytes(sqlite_url)
    ((config, join),) = raw_set_columns(sqlite_url)
    assert config.startswith("fernet:")
    assert join is not None
    assert join.startswith("fernet:")

    # Another key (or none) reads the set without its secrets and says why, so
    # that one such set cannot break listing the others; it keeps them when written.
    for reader_key, cause in ((None, "set TALPROV_STORE_KEY"),
                              ("another key, long enough to be a key", "KEY differs")):
        with Store(sqlite_url, key=reader_key) as reader:
            unread = reader.get_request_set("pool")
            assert unread is not None
            assert unread.unreadable is not None
            assert cause in unread.unreadable
            assert unread.machine_config.get_secret_value() == ""
            assert unread.join_url is None
            assert "CANARY" not in unread.unreadable
            assert "another key" not in unread.unreadable
            document = {**unread.document, "machine_count": 0}
            reader.put_request_set("pool", document, machine_config=None, join_url=None)
        assert raw_set_columns(sqlite_url) == [(config, join)]
    with Store(sqlite_url, key="set key") as store:
        kept = store.get_request_set("pool")
    assert kept is not None
    assert kept.unreadable is None
    assert kept.machine_config.get_secret_value() == CANARY_CONFIG
    assert kept.document["machine_count"] == 0


def test_without_a_key_secrets_are_plain_text(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
        put(store)
    assert CANARY_CONFIG.encode() in database_bytes(sqlite_url)
    assert raw_set_columns(sqlite_url) == [("plain:" + CANARY_CONFIG, "plain:" + CANARY_JOIN)]


def test_encrypted_set_on_postgresql(postgres_url: str) -> None:
    with Store(postgres_url, key="k1") as store:
        store.migrate()
        put(store)
        record = store.get_request_set("pool")
    assert record is not None
    assert record.machine_config.get_secret_value() == CANARY_CONFIG
    ((config, join),) = raw_set_columns(postgres_url)
    assert config.startswith("fernet:")
    assert "CANARY" not in config
    assert join is not None
    assert "CANARY" not in join


# -- the upgrade from version 1 ---------------------------------------------------


@pytest.fixture
def v1_engine(store_url: str) -> Iterator[sa.Engine]:
    """A store left at revision 0001 (talprov 0.1's schema version 1)."""
    engine, _lock = create_store_engine(store_url)
    assert upgrade(engine, target="0001") == "0001"
    yield engine
    engine.dispose()


def old_style_set(codec: SecretCodec, *, join: bool = True) -> dict[str, Any]:
    """A set document exactly as the version-1 service wrote it into ``clusters``."""
    return {
        "kind": "MachineRequestSet",
        "template": {"id": "pool-0", "provider": "aws-dev", "labels": {"role": "worker"}},
        "machine_config": codec.encode(CANARY_CONFIG),
        "join_api_url": codec.encode(CANARY_JOIN) if join else None,
        "join_options": {"mode": "kernel_args"} if join else None,
        "machine_count": 2,
        "deleting": False,
        "fingerprint": "f" * 64,
        "created_at": T0.isoformat(),
        "updated_at": (T0 + timedelta(minutes=5)).isoformat(),
    }


def insert_cluster_row(engine: sa.Engine, name: str, spec: Any) -> None:
    text = spec if isinstance(spec, str) else json.dumps(spec)
    with engine.begin() as conn:
        # The clusters table has not changed since version 1.
        conn.execute(clusters.insert().values(name=name, spec=text, updated_at=ROW_TIME))


@pytest.mark.parametrize("key", [None, "the store key"])
def test_version_1_sets_move_out_of_the_cluster_table(
    v1_engine: sa.Engine, store_url: str, key: str | None
) -> None:
    codec = SecretCodec(key)
    insert_cluster_row(v1_engine, "machine-request-set/pool", old_style_set(codec))
    insert_cluster_row(v1_engine, "machine-request-set/bare", old_style_set(codec, join=False))
    insert_cluster_row(v1_engine, "prod", {"name": "prod", "sets": {}})

    with Store(store_url, key=key) as store:
        store.migrate()
        assert store.list_clusters() == ["prod"]
        assert store.get_cluster("prod") == {"name": "prod", "sets": {}}
        assert store.list_request_sets() == ["bare", "pool"]
        pool = store.get_request_set("pool")
        bare = store.get_request_set("bare")
    assert status(v1_engine).current == head_revision()

    assert pool is not None
    assert bare is not None
    assert pool.machine_config.get_secret_value() == CANARY_CONFIG
    assert pool.join_url is not None
    assert pool.join_url.get_secret_value() == CANARY_JOIN
    assert bare.join_url is None
    # The sealed text was copied, not re-encoded: its scheme is the old one.
    prefix = "plain:" if key is None else "fernet:"
    assert all(config.startswith(prefix) for config, _join in raw_set_columns(store_url))
    expected = old_style_set(codec)
    for field in ("machine_config", "join_api_url", "created_at", "updated_at"):
        del expected[field]
    assert pool.document == expected
    assert (pool.created_at, pool.updated_at, pool.version) == (
        T0, T0 + timedelta(minutes=5), 1,
    )


def test_a_version_1_set_without_times_takes_the_rows(
    v1_engine: sa.Engine, store_url: str
) -> None:
    doc = old_style_set(SecretCodec(None))
    del doc["created_at"]
    doc["updated_at"] = "yesterday"
    insert_cluster_row(v1_engine, "machine-request-set/pool", doc)
    with Store(store_url) as store:
        store.migrate()
        record = store.get_request_set("pool")
    assert record is not None
    assert (record.created_at, record.updated_at) == (ROW_TIME, ROW_TIME)


@pytest.mark.parametrize(
    "spec",
    ["not json", [1, 2], {**old_style_set(SecretCodec(None)), "machine_config": CANARY_CONFIG}],
    ids=["not-json", "not-an-object", "unsealed-config"],
)
def test_a_broken_version_1_set_stops_the_upgrade_and_changes_nothing(
    v1_engine: sa.Engine, store_url: str, spec: Any
) -> None:
    insert_cluster_row(v1_engine, "machine-request-set/pool", spec)
    with Store(store_url) as store:
        with pytest.raises(StoreError, match="pool") as err:
            store.migrate()
        assert "CANARY" not in str(err.value)
    assert status(v1_engine).current == "0001"
    with v1_engine.connect() as conn:
        assert not sa.inspect(conn).has_table("request_sets")
        names = conn.execute(sa.text("SELECT name FROM clusters")).scalars().all()
    assert names == ["machine-request-set/pool"]

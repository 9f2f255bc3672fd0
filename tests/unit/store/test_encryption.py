"""Machine configs and join URLs at rest: encrypted with a key, unreadable without it."""

from __future__ import annotations

import base64
import hmac
from pathlib import Path

import pytest
import sqlalchemy as sa

from talprov.store import Store, StoreError, StoreKeyError
from talprov.store.crypto import SecretCodec, derive_fernet_key, derive_key_id
from tests.unit.store.factories import CANARY_CONFIG, CANARY_JOIN, make_request

SECRET_MARKERS = ("CANARY-CONFIG", "CANARY-KEY", "CANARY-TOKEN")


def database_bytes(url: str) -> bytes:
    """The SQLite file plus its WAL, i.e. every byte SQLite has written."""
    path = Path(sa.make_url(url).database or "")
    parts = [path, path.with_name(path.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def raw_secret_columns(url: str) -> list[tuple[str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT machine_config, join_api_url FROM requests"))
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


def test_with_a_key_secrets_never_reach_the_file(sqlite_url: str) -> None:
    with Store(sqlite_url, key="correct horse battery staple") as store:
        store.migrate()
        for n in range(3):
            store.create_request(make_request(f"web-{n}"))
        # Read back while the data may still sit in the WAL, then after a checkpoint.
        raw = database_bytes(sqlite_url)
        assert b"web-2" in raw  # the probe does see what was written
        for marker in SECRET_MARKERS:
            assert marker.encode() not in raw
        record = store.get_request("web-1")
    assert record is not None
    assert record.request.machine_config.get_secret_value() == CANARY_CONFIG
    assert record.request.join is not None
    assert record.request.join.api_url.get_secret_value() == CANARY_JOIN
    raw = database_bytes(sqlite_url)
    for marker in SECRET_MARKERS:
        assert marker.encode() not in raw
    for config, join in raw_secret_columns(sqlite_url):
        assert config.startswith("fernet:")
        assert join is not None
        assert join.startswith("fernet:")


def test_without_a_key_secrets_are_plain_text(sqlite_url: str) -> None:
    # The converse check, proving the byte probe above would have found them.
    with Store(sqlite_url) as store:
        store.migrate()
        store.create_request(make_request())
    assert b"CANARY-CONFIG" in database_bytes(sqlite_url)
    assert raw_secret_columns(sqlite_url) == [("plain:" + CANARY_CONFIG, "plain:" + CANARY_JOIN)]


def test_encrypted_column_on_postgresql(postgres_url: str) -> None:
    with Store(postgres_url, key="k1") as store:
        store.migrate()
        store.create_request(make_request())
        assert store.list_requests()[0].request.machine_config.get_secret_value() == CANARY_CONFIG
    ((config, join),) = raw_secret_columns(postgres_url)
    assert "CANARY" not in config
    assert join is not None
    assert "CANARY" not in join


@pytest.mark.parametrize("reader_key", [None, "wrong key"])
def test_reading_encrypted_rows_without_the_right_key_says_why(
    sqlite_url: str, reader_key: str | None
) -> None:
    # The record still reads (so it can be shown and deleted), without its secrets,
    # and says why; the rows beside it read in full.
    with Store(sqlite_url, key="right key") as writer:
        writer.migrate()
        writer.create_request(make_request())
    with Store(sqlite_url, key=reader_key) as reader:
        reader.create_request(make_request("web-2"))
        fetched = reader.get_request("web-1")
        listed = {r.id: r for r in reader.list_requests()}
    assert listed["web-2"].unreadable is None
    assert listed["web-2"].request.machine_config.get_secret_value() == CANARY_CONFIG
    for record in (fetched, listed["web-1"]):
        assert record is not None
        assert record.unreadable is not None
        assert "TALPROV_STORE_KEY" in record.unreadable
        assert record.request.machine_config.get_secret_value() == ""
        assert record.request.join is None
        for text in (record.unreadable, repr(record)):
            assert "CANARY" not in text
            assert "right key" not in text
            assert "fernet:" not in text


def test_rows_written_before_a_key_was_set_stay_readable(sqlite_url: str) -> None:
    with Store(sqlite_url) as before:
        before.migrate()
        before.create_request(make_request("old"))
    with Store(sqlite_url, key="new key") as after:
        after.create_request(make_request("new"))
        secrets = [r.request.machine_config.get_secret_value() for r in after.list_requests()]
    assert secrets == [CANARY_CONFIG, CANARY_CONFIG]


def test_key_derivation_is_stable_and_key_specific() -> None:
    assert derive_fernet_key("a") == derive_fernet_key("a")
    assert derive_fernet_key("a") != derive_fernet_key("b")
    with pytest.raises(StoreKeyError, match="empty"):
        derive_fernet_key("")


def test_the_key_id_names_the_key_without_revealing_it() -> None:
    key = "a random enough store key of 32 bytes"
    assert derive_key_id(key) == derive_key_id(key)
    assert derive_key_id(key) != derive_key_id(key + "!")
    # RFC 5869 HKDF-SHA256 (salt "talprov.store", info "talprov store key id v1"),
    # computed here with hmac alone: one block of output, its first 8 bytes.
    prk = hmac.digest(b"talprov.store", key.encode(), "sha256")
    block = hmac.digest(prk, b"talprov store key id v1" + b"\x01", "sha256")
    assert derive_key_id(key) == block[:8].hex()
    # Another context than the Fernet key's: not a prefix of it (as it would be if
    # both used one info).
    fernet = base64.urlsafe_b64decode(derive_fernet_key(key))
    assert bytes.fromhex(derive_key_id(key)) != fernet[:8]
    assert SecretCodec(key).key_id == derive_key_id(key)
    assert SecretCodec(None).key_id is None
    with pytest.raises(StoreKeyError, match="empty"):
        derive_key_id("")


def test_codec_round_trip_and_tampering() -> None:
    codec = SecretCodec("k")
    stored = codec.encode("s3cret")
    assert "s3cret" not in stored
    assert codec.decode(stored) == "s3cret"
    assert codec.encode("s3cret") != stored  # fresh IV each time
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    with pytest.raises(StoreKeyError):
        codec.decode(tampered)
    with pytest.raises(StoreKeyError, match="unknown format"):
        codec.decode("rot13:fr3peg")


def test_repr_and_errors_do_not_show_secrets(sqlite_url: str) -> None:
    url_with_password = "postgresql+psycopg://user:hunter2@127.0.0.1:1/db"
    store = Store(url_with_password, key="k")
    assert "hunter2" not in repr(store)
    assert "hunter2" not in store.url
    with pytest.raises(StoreError) as caught:
        store.migrate()  # nothing listens on port 1
    assert "hunter2" not in str(caught.value)
    store.close()

    with Store(sqlite_url, key="k") as local:
        local.migrate()
        record = local.create_request(make_request())
    text = repr(record)
    for marker in SECRET_MARKERS:
        assert marker not in text


@pytest.mark.parametrize("stored", ["fernet:é", "fernet:gAAAA\u2028", "fernet:\udcff"])
def test_opens_is_false_for_non_ascii_after_the_prefix(stored: str) -> None:
    # Fernet tokens are ASCII; decode's .encode("ascii") let UnicodeEncodeError out
    # of opens, which promises never to raise.
    codec = SecretCodec("a random enough store key of 32 bytes")
    assert codec.opens(stored) is False
    with pytest.raises(StoreKeyError, match="unknown format"):
        codec.decode(stored)


@pytest.mark.parametrize("key", [None, "correct horse battery staple"])
def test_encode_refuses_text_without_a_utf8_form_without_showing_it(key: str | None) -> None:
    """A lone surrogate cannot be encrypted nor stored (the database encodes text as
    UTF-8 too): a ValueError that says so, never UnicodeEncodeError, whose
    ``object`` carries the whole secret into tracebacks."""
    from talprov.store.crypto import UnencodableSecret

    with pytest.raises(UnencodableSecret) as caught:
        SecretCodec(key).encode("CANARY-CONFIG \ud800 tail")
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, UnicodeError)
    assert "CANARY" not in str(caught.value)
    assert "\ud800" not in str(caught.value)
    assert "unpaired surrogate" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__

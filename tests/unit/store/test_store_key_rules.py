"""Which TALPROV_STORE_KEY values are taken: random ones, never a placeholder.

HKDF does not stretch a weak key, so a key that is long but not random (one byte
repeated, a word repeated) must be refused like a short one.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from talprov.errors import ConfigError
from talprov.providers.types import MachineRequest
from talprov.store.crypto import store_key_from
from talprov.store.store import Store
from tests.helpers import Home

CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n"


@pytest.mark.parametrize("key", [
    "a" * 40,
    "0" * 64,
    "ab" * 20,
    "changeme" * 5,
    "0123456789" * 4,
    "passwordpasswordpasswordpassword",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
])
def test_a_long_but_not_random_key_is_refused(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store_key_from({"TALPROV_STORE_KEY": key})
    message = str(caught.value)
    assert message.startswith("TALPROV_STORE_KEY")
    assert "openssl rand -base64 32" in message
    assert "\n" not in message
    assert key not in message


def test_every_documented_way_of_making_a_key_is_taken() -> None:
    # Seeded, so the run is repeatable; 2000 keys of each documented form.
    rng = random.Random(20261206)
    for _ in range(2000):
        raw = rng.randbytes(32)
        for key in (base64.urlsafe_b64encode(raw).decode().rstrip("="),  # token_urlsafe(32)
                    base64.b64encode(raw).decode(),                       # openssl -base64
                    raw.hex()):                                           # openssl rand -hex 32
            assert store_key_from({"TALPROV_STORE_KEY": key}) == key


def test_a_passphrase_with_enough_different_characters_is_taken() -> None:
    key = "this installation's own key, 32 bytes or more"
    assert store_key_from({"TALPROV_STORE_KEY": key}) == key


def test_a_store_sealed_with_a_placeholder_before_the_rule_stays_readable(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: the rule came after stores were sealed with such keys; refusing the key
    # for them too would lock their records away for good (there is no re-key).
    placeholder = "changeme" * 5
    monkeypatch.setenv("TALPROV_STORE_KEY", placeholder)
    fresh = home.invoke("machine", "list")
    assert fresh.exit_code == 2, fresh.output  # an empty store: refused
    assert "is not random" in fresh.output
    with Store(home.store_url, key=placeholder) as old:  # as an older talprov sealed it
        old.migrate()
        old.create_request(MachineRequest.model_validate(
            {"id": "r-1", "provider": "fake", "talos_version": "v1.12.0",
             "machine_config": CONFIG}))
    for command in (("machine", "list", "-o", "json"), ("config", "check")):
        result = home.invoke(*command)
        assert result.exit_code == 0, result.output
        assert "TALPROV_STORE_KEY is not random" in result.output
        assert placeholder not in result.output
    assert "r-1" in home.invoke("machine", "list").output


def test_a_placeholder_key_with_a_store_that_is_not_a_url_is_one_line(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: looking for records under a placeholder key parsed the URL itself, and
    # a URL that is none was a traceback instead of the usual exit 2.
    monkeypatch.setenv("TALPROV_STORE_KEY", "changeme" * 5)
    result = home.invoke("--store", "not a url", "machine", "list")
    assert result.exit_code == 2, result.output
    assert "not a valid SQLAlchemy URL" in result.output
    assert "Traceback" not in result.output


def test_a_placeholder_key_is_refused_for_a_store_whose_records_are_all_unencrypted(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # QA: the exception is for records an older talprov SEALED with such a key; a store
    # holding only unencrypted records has nothing the placeholder could unlock, so it
    # must be refused there as for an empty store (else it seals new records with it).
    with Store(home.store_url) as unencrypted:
        unencrypted.migrate()
        unencrypted.create_request(MachineRequest.model_validate(
            {"id": "r-1", "provider": "fake", "talos_version": "v1.12.0",
             "machine_config": CONFIG}))
    monkeypatch.setenv("TALPROV_STORE_KEY", "changeme" * 5)
    refused = home.invoke("machine", "list")
    assert refused.exit_code == 2, refused.output
    assert "is not random" in refused.output
    assert "it is used because" not in refused.output


def test_only_encrypted_text_counts_as_sealed_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    request = MachineRequest.model_validate(
        {"id": "r-1", "provider": "fake", "talos_version": "v1.12.0", "machine_config": CONFIG})
    with Store(url) as store:
        assert store.holds_sealed_records() is False  # no schema yet
        store.migrate()
        store.create_request(request)
        store.put_cluster("plain", {"spec": {"sets": {"w": {"machine_config": {
            "sealed": store.seal(CONFIG)}}}}})
        assert store.holds_sealed_records() is False
    for sealing in ("request", "cluster", "request set"):
        path = tmp_path / f"{sealing}.db"
        with Store(f"sqlite:///{path}", key="changeme" * 5) as store:
            store.migrate()
            if sealing == "request":
                store.create_request(request)
            elif sealing == "request set":
                store.put_request_set("s", {}, machine_config=CONFIG, join_url=None)
            else:
                store.put_cluster("c", {"spec": {"sets": {"w": {"machine_config": {
                    "sealed": store.seal(CONFIG)}}}}})
        with Store(f"sqlite:///{path}") as probe:  # no key needed to tell
            assert probe.holds_sealed_records() is True, sealing

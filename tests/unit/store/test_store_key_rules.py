"""Which TALPROV_STORE_KEY values are taken: random ones, never a placeholder.

HKDF does not stretch a weak key, so a key that is long but not random (one byte
repeated, a word repeated) must be refused like a short one.
"""

from __future__ import annotations

import base64
import random

import pytest

from talprov.errors import ConfigError
from talprov.store.crypto import store_key_from


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

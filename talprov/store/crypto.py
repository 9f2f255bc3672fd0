"""Encryption at rest for the secret columns (machine configs, join URLs).

Each stored value carries a scheme prefix, so a store can hold rows written
before and after a key was configured: ``plain:`` rows stay readable with or
without a key, ``fernet:`` rows need the key they were written with.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from talprov.errors import ConfigError
from talprov.store.errors import StoreKeyError

PLAIN_PREFIX = "plain:"
FERNET_PREFIX = "fernet:"

# Fixed salt and context: the same TALPROV_STORE_KEY must give the same Fernet key
# in every process and on every replica, so nothing per-database may enter the KDF.
# So the key id too is the same wherever one key is used: two stores sealed with
# one key show it by equal ids (docs/security.md says so; use a key per store).
# HKDF does not stretch a weak passphrase: the key should be random (32+ bytes).
_KDF_SALT = b"talprov.store"
_KDF_INFO = b"talprov store fernet key v1"
# Another context of the same HKDF: an independent value that names the key
# without revealing it or the Fernet key.
_KEY_ID_INFO = b"talprov store key id v1"
#: Hex digits of a key id (64 bits: two keys of one installation never share one).
KEY_ID_LENGTH = 16


#: The shortest TALPROV_STORE_KEY taken, in bytes: HKDF adds no strength, so the key
#: itself must be random enough (32 random bytes in base64 are 43 or 44 characters).
MIN_STORE_KEY_BYTES = 32
#: The fewest different characters a TALPROV_STORE_KEY may have: a random key has
#: many (hex of 32 random bytes uses 16 symbols, base64 about 30), a placeholder
#: such as 40 x "a" or "changeme" repeated has few.
MIN_STORE_KEY_DISTINCT_CHARS = 10
KEY_HINT = ("make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' "
            "or: openssl rand -base64 32")


def store_key_from(environ: Mapping[str, str], *, placeholder_ok: bool = False) -> str | None:
    """The ``TALPROV_STORE_KEY`` of ``environ``, or None when unset (no encryption).

    Raises :class:`ConfigError` naming the variable, never the key, for a key
    shorter than :data:`MIN_STORE_KEY_BYTES`, for one set but empty (a unit
    file's unset ``${KEY}`` must not silently store configs in clear), and for one
    that is plainly not random (see :func:`not_random_reason`) unless
    ``placeholder_ok``: a store already sealed with such a key must stay readable
    (the caller decides, and warns). Pure."""
    key = environ.get("TALPROV_STORE_KEY")
    if key is not None and not key.strip():
        raise ConfigError("TALPROV_STORE_KEY", "is set but empty; unset it to store configs "
                          f"unencrypted, or give a random key ({KEY_HINT})")
    if key is not None and len(key.encode()) < MIN_STORE_KEY_BYTES:
        raise ConfigError(
            "TALPROV_STORE_KEY",
            f"is too short ({len(key.encode())} bytes); give at least "
            f"{MIN_STORE_KEY_BYTES} random bytes ({KEY_HINT})",
        )
    reason = not_random_reason(key) if key is not None and not placeholder_ok else None
    if reason is not None:
        raise ConfigError("TALPROV_STORE_KEY", f"is not random ({reason}); {KEY_HINT}")
    return key


def not_random_reason(key: str) -> str | None:
    """Why ``key`` is plainly not random, or None. Two rules a person can check by
    eye, both never met by a generated key: fewer than
    :data:`MIN_STORE_KEY_DISTINCT_CHARS` different characters, or one shorter piece
    repeated (``key`` occurs inside ``key + key`` only at 0 and len unless it is
    periodic). The reason never quotes the key. Pure."""
    distinct = len(set(key))
    if distinct < MIN_STORE_KEY_DISTINCT_CHARS:
        return (f"only {distinct} different character(s); a random key has at least "
                f"{MIN_STORE_KEY_DISTINCT_CHARS}")
    if (key + key).find(key, 1) < len(key):
        return "it is one shorter piece repeated"
    return None


def derive_fernet_key(key: str) -> bytes:
    """Turn any ``TALPROV_STORE_KEY`` string into a url-safe base64 Fernet key.

    Deterministic and pure. Raises :class:`StoreKeyError` for an empty key.
    """
    if not key:
        raise StoreKeyError("TALPROV_STORE_KEY is set but empty; unset it or give a random key")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT, info=_KDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(key.encode()))


def derive_key_id(key: str) -> str:
    """A short public name of ``TALPROV_STORE_KEY`` ``key`` (16 hex digits): stored
    beside what the key sealed, so that a query can tell records sealed under
    another key apart without decrypting any. Reveals neither the key nor the
    Fernet key (a separate HKDF output). Deterministic and pure. Raises
    :class:`StoreKeyError` for an empty key."""
    if not key:
        raise StoreKeyError("TALPROV_STORE_KEY is set but empty; unset it or give a random key")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_ID_LENGTH // 2, salt=_KDF_SALT,
                info=_KEY_ID_INFO)
    return hkdf.derive(key.encode()).hex()


class UnencodableSecret(ValueError):
    """Secret text with no UTF-8 form (a lone UTF-16 surrogate): a caller's bug, as
    every front door refuses such input; not a :class:`StoreError` (the store is
    fine, and the API must not answer 503 for it)."""


class SecretCodec:
    """Encodes secret text for a column and decodes it back.

    With a key every value is Fernet-encrypted (AES-128-CBC + HMAC-SHA256, with a
    timestamp); without one values are stored as plain text behind a marker.
    """

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(derive_fernet_key(key)) if key is not None else None
        #: :func:`derive_key_id` of the key, None without one (values stay plain).
        self.key_id = derive_key_id(key) if key is not None else None

    @property
    def encrypting(self) -> bool:
        """True when new values are written encrypted."""
        return self._fernet is not None

    def encode(self, secret: str) -> str:
        """Column text for ``secret``. Pure apart from Fernet's random IV.

        Raises :class:`UnencodableSecret` (a ValueError) for text with no UTF-8 form
        (a lone surrogate), with a key or without: the database stores text as
        UTF-8 too. Every front door refuses such text first, naming the field;
        this is the last guard, and its message never carries the secret.
        """
        try:
            data = secret.encode()
        except UnicodeEncodeError as exc:
            # Not chained: UnicodeEncodeError.object is the whole secret.
            raise UnencodableSecret(
                f"secret text is not valid Unicode (an unpaired surrogate at character "
                f"{exc.start}); it cannot be stored") from None
        if self._fernet is None:
            return PLAIN_PREFIX + secret
        return FERNET_PREFIX + self._fernet.encrypt(data).decode("ascii")

    def decode(self, stored: str) -> str:
        """The secret behind column text written by :meth:`encode`.

        Raises :class:`StoreKeyError` when the value is encrypted and no key, or a
        different key, is configured, or when the text is not in a known format.
        The message never includes the stored value.
        """
        if stored.startswith(PLAIN_PREFIX):
            return stored[len(PLAIN_PREFIX) :]
        if not stored.startswith(FERNET_PREFIX):
            raise StoreKeyError("stored secret has an unknown format")
        if self._fernet is None:
            raise StoreKeyError("data is encrypted at rest; set TALPROV_STORE_KEY to read it")
        try:
            token = stored[len(FERNET_PREFIX) :].encode("ascii")
        except UnicodeEncodeError:  # a Fernet token is base64: never written by encode
            raise StoreKeyError("stored secret has an unknown format") from None
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            # Fernet's HMAC check fails for a different key and for tampered data alike.
            raise StoreKeyError(
                "cannot decrypt stored data: TALPROV_STORE_KEY differs from the key "
                "it was written with (or the data was altered)"
            ) from None

    def opens(self, *stored: str | None) -> bool:
        """Whether every one of ``stored`` (column text written by :meth:`encode`;
        None for an empty column) decodes with this codec's key, as reading the
        record would find. Never raises."""
        try:
            for text in stored:
                if text is not None:
                    self.decode(text)
        except StoreKeyError:
            return False
        return True

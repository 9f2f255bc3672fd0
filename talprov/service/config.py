"""The ``service:`` block of talprov.yaml: where to listen, tokens, TLS, workers.

``load_config`` hands this block over as a raw mapping (with ``${env:…}`` and
``${file:…}`` references already resolved); :func:`parse_service_config` turns
it into a typed :class:`ServiceConfig` and names the bad field when it cannot.
"""

from __future__ import annotations

import hashlib
import ipaddress
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from talprov.config import split_listen
from talprov.durations import Seconds
from talprov.errors import ConfigError, validate

DEFAULT_LISTEN = "127.0.0.1:8080"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


#: Tokens shorter than this are refused, given as value or (when presented) as sha256.
MIN_TOKEN_LENGTH = 16
#: Digests of short tokens people paste from examples: refused at load.
WEAK_TOKEN_DIGESTS = frozenset(
    hashlib.sha256(word.encode()).hexdigest()
    for word in ("", "test", "token", "secret", "password", "changeme", "admin", "omni")
)


class TokenConfig(BaseModel):
    """One bearer token: who it is, which provider instances it may touch, read or write.

    Give the token either as ``sha256`` (hex digest of the token text; the token
    itself then never sits in the config) or as ``value`` (typically
    ``${env:NAME}``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=100, description="Recorded as the actor.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    value: SecretStr | None = None
    providers: tuple[str, ...] = Field(default=("*",), min_length=1)
    access: Access = Access.READ

    @model_validator(mode="after")
    def _one_secret(self) -> TokenConfig:
        if (self.sha256 is None) == (self.value is None):
            raise ValueError("give exactly one of sha256 or value")
        if self.value is not None and len(self.value.get_secret_value()) < MIN_TOKEN_LENGTH:
            # A short token can be guessed online; constant-time comparison does
            # not help against that.
            raise ValueError(f"value must be at least {MIN_TOKEN_LENGTH} characters")
        if self.sha256 is not None and self.sha256.lower() in WEAK_TOKEN_DIGESTS:
            # A digest hides the token's length; what can be known is refused here,
            # the rest when such a token is presented (TokenVerifier.verify).
            raise ValueError("sha256 is the digest of a well-known short token "
                             f"(at least {MIN_TOKEN_LENGTH} characters are needed)")
        return self

    def digest_hex(self) -> str:
        """The token's SHA-256 as lower-case hex, however it was given."""
        if self.value is not None:
            return hashlib.sha256(self.value.get_secret_value().encode()).hexdigest()
        assert self.sha256 is not None  # _one_secret guarantees one of them
        return self.sha256.lower()

    def allows_provider(self, provider: str) -> bool:
        return "*" in self.providers or provider in self.providers


class TlsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cert: str = Field(description="PEM certificate (chain) file.")
    key: str = Field(description="PEM private key file.")


class ServiceConfig(BaseModel):
    """Settings of ``talprov serve``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    listen: str = DEFAULT_LISTEN
    tokens: tuple[TokenConfig, ...] = ()
    tls: TlsConfig | None = None
    #: Allow plain HTTP on a non-loopback address (bearer tokens and machine
    #: configs then cross the network in clear text).
    insecure_http: bool = False
    #: Run the reconcile loop here (off: an API-only replica).
    workers: bool = True
    #: Where ``talprov serve`` runs that loop: a child ``process`` (the API keeps
    #: an interpreter of its own, so reconcile work cannot slow it down) or a
    #: ``thread`` of the API's process (one process; an in-memory store needs it).
    worker_mode: Literal["process", "thread"] = "process"
    #: How many steps of CPU priority (nice) the ``process`` worker runs below the
    #: API: when the CPUs are busy the API's handlers go first and the reconcile
    #: work catches up after the burst. 0 keeps the API's priority.
    worker_nice: int = Field(default=10, ge=0, le=19)
    #: Seconds between reconcile passes when nothing wakes the loop earlier.
    reconcile_interval: float = Field(default=1.0, gt=0, le=300)
    #: Lease length; a replica that dies holds its requests at most this long.
    lease_ttl: float = Field(default=30.0, ge=1, le=3600)
    #: Lease identity of this process; default ``host:pid``.
    worker_id: str | None = Field(default=None, min_length=1, max_length=200)
    #: Seconds a provider's health answer is reused by ``GET /v1/providers``.
    health_cache_seconds: Seconds = Field(default=30.0, ge=0)
    #: Largest request body accepted; larger ones get 413 before being read whole.
    #: Big control-plane configs (inline manifests) reach a few hundred KiB.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Seconds any one API call's store queries may take in total; then they are
    #: stopped (PostgreSQL statement_timeout, an interrupt on SQLite) and the
    #: call answers 503. The reconcile workers are not bound by it.
    query_timeout: float = Field(default=10.0, gt=0, le=600)
    #: Seconds a stop (SIGTERM) waits for open connections, and then for the
    #: running reconcile pass, before the process exits anyway.
    stop_timeout: float = Field(default=30.0, ge=0, le=3600)
    #: Log lines as ``plain`` text or ``json`` objects; ``--log-format`` wins.
    log_format: Literal["plain", "json"] = "plain"
    #: The Cluster Autoscaler's cloud provider beside the API; checked by
    #: ``talprov.autoscaler.config`` when ``talprov serve`` starts it (kept raw here
    #: so the API runs without the autoscaler extra's grpcio).
    autoscaler: dict[str, Any] | None = None

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_listen(value)  # the ValueError says what is wrong
        return value

    @model_validator(mode="after")
    def _unique_token_names(self) -> ServiceConfig:
        # Each message names the later entry by its index (the one to fix) and
        # the earlier one, never the secret.
        names: dict[str, int] = {}
        digests: dict[str, int] = {}
        for index, token in enumerate(self.tokens):
            if token.name in names:
                raise ValueError(f"tokens[{index}].name: {token.name!r} is already the name "
                                 f"of tokens[{names[token.name]}]; names are recorded as "
                                 "actors and must be unique")
            names[token.name] = index
            digest = token.digest_hex()
            if digest in digests:
                # The first would win every time: the second's access would be
                # silently unusable, or the first's silently widened.
                first = digests[digest]
                raise ValueError(f"tokens[{index}]: token {token.name!r} has the same secret "
                                 f"as tokens[{first}] ({self.tokens[first].name!r}); give "
                                 "each token its own")
            digests[digest] = index
        return self

    def host_port(self) -> tuple[str, int]:
        """``listen`` split into host and port (brackets of an IPv6 host removed)."""
        return split_listen(self.listen)


def parse_service_config(raw: dict[str, Any] | None, *, where: str = "service") -> ServiceConfig:
    """Validate the ``service`` block. Raises ``ConfigError`` naming the field.

    Idempotent and pure. The message never contains a token value.
    """
    return validate(ServiceConfig, raw or {}, where)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal or ``localhost``) only reaches this machine.

    Any other name counts as routable: what it resolves to can change.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port). Raises ``ConfigError``."""
    try:
        return split_listen(text)
    except ValueError as exc:
        raise ConfigError("--listen", str(exc)) from None

"""The data every part of talprov agrees on: requests, observed machines, stages.

Field names of :class:`MachineRequest` follow Omni's MachineRequest resource
(``talos_version``, ``extensions``, ``kernel_args``, ``meta_values``,
``provider_data``) so that people who know Omni recognise them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Request ids end up in cloud tags, VM names and hostnames: keep them DNS-label shaped.
REQUEST_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Semantic versioning as Talos tags and the Image Factory parse it (no leading zeros, no
# empty pre-release identifiers): anything else would name a path the factory refuses.
_SEMVER_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_PRERELEASE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
TALOS_VERSION_PATTERN = (
    rf"^v{_SEMVER_NUMBER}\.{_SEMVER_NUMBER}\.{_SEMVER_NUMBER}"
    rf"(?:-{_SEMVER_PRERELEASE_ID}(?:\.{_SEMVER_PRERELEASE_ID})*)?$"
)

_TALOS_VERSION = re.compile(TALOS_VERSION_PATTERN)


#: The Talos minor lines talprov carries rules for (config schema, images, boot), oldest
#: first. A new request for an older line is refused: talprov would check and boot it
#: by rules that are not its own. A newer line gets the newest rules and a warning.
SUPPORTED_TALOS_LINES: tuple[tuple[int, int], ...] = ((1, 9), (1, 10), (1, 11), (1, 12), (1, 13))
#: The supported lines as messages list them: "v1.9, v1.10, ...".
SUPPORTED_LINES_TEXT = ", ".join(f"v{major}.{minor}" for major, minor in SUPPORTED_TALOS_LINES)


def unsupported_line(value: str) -> str | None:
    """``"older"`` or ``"newer"`` when the well-formed version ``value`` is of a minor
    line before or after :data:`SUPPORTED_TALOS_LINES`, else None. Pure."""
    major, minor = (int(part) for part in value[1:].split(".")[:2])
    if (major, minor) < SUPPORTED_TALOS_LINES[0]:
        return "older"
    if (major, minor) > SUPPORTED_TALOS_LINES[-1]:
        return "newer"
    return None


def talos_version_problem(value: str) -> str | None:
    """The one message for a Talos version a new request may not name: malformed
    (see :func:`malformed_talos_version`) or older than every supported line (None
    when it is fine). Every place that reads a version (request files, cluster
    specs, the API, ``--version``) uses it, so one mistake reads the same
    everywhere. Pure."""
    problem = malformed_talos_version(value)
    if problem is not None:
        return problem
    if unsupported_line(value) == "older":
        return f"{value!r} is older than the Talos versions talprov supports " \
               f"({SUPPORTED_LINES_TEXT})"
    return None


def require_talos_version(value: str) -> str:
    """``value`` when a new request may name it; else ``ValueError`` with
    :func:`talos_version_problem`'s message (a pydantic validator). Pure."""
    problem = talos_version_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A Talos version a new request may name (what request files, specs and the API take).
NewTalosVersion = Annotated[str, AfterValidator(require_talos_version)]


def malformed_talos_version(value: str) -> str | None:
    """The message for a version that is not a Talos tag in semantic-versioning form,
    or None. Pure."""
    if _TALOS_VERSION.fullmatch(value):
        return None
    return f"{value!r} is not a Talos version like v1.13.9{leading_v_hint(value)}"


def leading_v_hint(value: str) -> str:
    """" (with the leading v)" when ``value`` is a Talos version but for its "v",
    else "". Pure."""
    return " (with the leading v)" if _TALOS_VERSION.fullmatch(f"v{value}") else ""


class Arch(StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"


class Stage(StrEnum):
    """Where a request is in its life; see docs/architecture.md."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    PROVISIONED = "provisioned"
    FAILED = "failed"
    DEPROVISIONING = "deprovisioning"
    GONE = "gone"

    @property
    def settled(self) -> bool:
        return self in (Stage.PROVISIONED, Stage.FAILED, Stage.GONE)


class MachineState(StrEnum):
    """What a provider reports about a machine, normalised across platforms."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    ERROR = "error"
    UNKNOWN = "unknown"


# Numbers and flags of a request are taken as written, never read from a string:
# pydantic's lax mode reads "yes" and "on" as true and "10" as 10. The API refuses
# those (422), and request files and cluster specs take the same types so that the
# three agree (QA: a request file read secure_boot "no" as false). Stored requests
# were validated before they were stored, so they hold real numbers and flags.

#: A request's flag (``secure_boot``): true or false, never "yes", "no" or 1.
RequestFlag = Annotated[bool, Field(strict=True)]


class MetaValue(BaseModel):
    """One Talos META key/value (the Image Factory's ``meta`` list entries); ``key``
    is a number, in files and API bodies alike (``"10"`` is refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: int = Field(ge=0, le=255, strict=True)
    value: str


class Overlay(BaseModel):
    """A board overlay (SBC images), as in the schematic's ``overlay`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    image: str
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


#: Schemes Talos accepts for ``siderolink.api`` (grpc:// is the plain-text one); its
#: SideroLinkConfig validation also wants an empty path (or "/").
JOIN_URL_SCHEMES = ("https", "grpc")
#: Validation context for requests read back from a store. Rules made stricter
#: after a request was stored (join URLs, version syntax) must not make it
#: unreadable: a pass would fail on it every time and it could not even be
#: listed or deleted. New requests get the strict rules; stored ones the old.
STORED = {"stored": True}
_STORED_JOIN_URL_SCHEMES = ("https", "http", "grpc")
_STORED_TALOS_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


def is_stored(info: ValidationInfo) -> bool:
    """Whether a validator runs on data read back from a store (``context=STORED``)."""
    return isinstance(info.context, dict) and bool(info.context.get("stored"))
GRPC_TUNNEL_PARAM = "grpc_tunnel"


class GrpcTunnelMode(StrEnum):
    """Omni's ``GrpcTunnelMode`` of a MachineRequest: whether SideroLink runs over gRPC.

    ``enabled`` makes the join URL carry ``grpc_tunnel=true`` (what Omni's providers
    render), ``disabled`` removes the parameter, ``unset`` keeps the URL as given.
    """

    UNSET = "unset"
    ENABLED = "enabled"
    DISABLED = "disabled"
_UNSAFE_IN_KERNEL_ARG = re.compile(r"[\s\x00-\x1f\x7f]")


class JoinSpec(BaseModel):
    """Omni join parameters. ``api_url`` carries the join token, so it is a secret."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    api_url: SecretStr
    events_sink: str = "[fdae:41e4:649b:9303::1]:8090"
    kmsg_log: str = "tcp://[fdae:41e4:649b:9303::1]:8092"
    # "kernel_args" puts siderolink.api=... on the kernel command line, "documents"
    # appends SideroLinkConfig/EventSinkConfig/KmsgLogConfig to the machine config.
    mode: str = Field(default="auto", pattern="^(auto|kernel_args|documents)$")

    # These values travel on the kernel command line, where a space or control
    # character would split one into extra kernel arguments. Messages never quote
    # the URL: it carries the join token.
    @field_validator("api_url")
    @classmethod
    def _usable_api_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        url = value.get_secret_value()
        if _UNSAFE_IN_KERNEL_ARG.search(url):
            raise ValueError("must not contain spaces or control characters")
        stored = is_stored(info)
        schemes = _STORED_JOIN_URL_SCHEMES if stored else JOIN_URL_SCHEMES
        try:
            parsed = urlsplit(url)
            usable = parsed.scheme in schemes and bool(parsed.hostname)
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            usable = False
        if not usable:
            raise ValueError(
                f"must be a URL with a host and scheme {' or '.join(schemes)}")
        if not stored and parsed.path not in ("", "/"):
            raise ValueError("must have an empty path (Talos refuses any other)")
        return value

    def with_grpc_tunnel(self, mode: GrpcTunnelMode) -> JoinSpec:
        """This join with ``api_url`` set for ``mode`` (Omni's rendering). Pure, idempotent."""
        if mode is GrpcTunnelMode.UNSET:
            return self
        parts = urlsplit(self.api_url.get_secret_value())
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != GRPC_TUNNEL_PARAM]
        if mode is GrpcTunnelMode.ENABLED:
            query.append((GRPC_TUNNEL_PARAM, "true"))
        # Go's url.Values.Encode, which Omni uses: keys sorted, QueryEscape'd values.
        encoded = urlencode(sorted(query, key=lambda kv: kv[0]), quote_via=quote_plus)
        url = urlunsplit(parts._replace(query=encoded))
        return self.model_copy(update={"api_url": SecretStr(url)})

    @field_validator("events_sink", "kmsg_log")
    @classmethod
    def _one_kernel_arg(cls, value: str) -> str:
        if _UNSAFE_IN_KERNEL_ARG.search(value):
            raise ValueError("must not contain spaces or control characters")
        return value


class MachineRequest(BaseModel):
    """A resolved request: everything a provider needs to make one machine.

    ``machine_config`` is the Talos machine configuration text (possibly empty when
    the machine only joins Omni). It holds cluster CA keys: it is a ``SecretStr``
    so it never shows up in reprs, logs or exceptions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern=REQUEST_ID_PATTERN, max_length=63)
    provider: str = Field(min_length=1)
    talos_version: str
    arch: Arch = Arch.AMD64
    secure_boot: RequestFlag = False
    extensions: tuple[str, ...] = ()
    kernel_args: tuple[str, ...] = ()
    meta_values: tuple[MetaValue, ...] = ()
    overlay: Overlay | None = None
    machine_config: SecretStr = SecretStr("")
    join: JoinSpec | None = None
    grpc_tunnel: GrpcTunnelMode = GrpcTunnelMode.UNSET
    labels: dict[str, str] = Field(default_factory=dict)
    provider_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _join_url_for_the_tunnel(self) -> MachineRequest:
        # Applied once here so that every driver, kernel argument and join document
        # sees the URL Omni would hand out. The model is frozen, hence object.__setattr__.
        if self.join is not None:
            object.__setattr__(self, "join", self.join.with_grpc_tunnel(self.grpc_tunnel))
        return self

    @field_validator("talos_version")
    @classmethod
    def _talos_version(cls, value: str, info: ValidationInfo) -> str:
        if is_stored(info):
            if not _STORED_TALOS_VERSION.fullmatch(value):
                raise ValueError(f"{value!r} is not a Talos version")
            return value
        return require_talos_version(value)

    @field_validator("extensions")
    @classmethod
    def _sort_extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Omni's buildSchematic sorts a request's extensions and keeps duplicates, and
        # the factory hashes every list item: dropping one would name another schematic.
        return tuple(sorted(value))

    def fingerprint(self) -> str:
        """A digest of everything the machine is created from, secrets included.

        Two requests with the same fingerprint produce the same machine; the
        service uses it to tell a harmless re-create from a conflicting one, the
        scaler to tell an outdated machine. Secrets enter only as digests.
        """
        body = self.model_dump(mode="json", exclude={"machine_config", "join"})
        if self.grpc_tunnel is GrpcTunnelMode.UNSET:
            # Absent when unset, so requests made before the field existed keep their
            # fingerprint (and their machines are not seen as outdated).
            del body["grpc_tunnel"]
        body["machine_config_sha256"] = _sha256(self.machine_config.get_secret_value())
        if self.join is not None:
            join = self.join.model_dump(mode="json", exclude={"api_url"})
            join["api_url_sha256"] = _sha256(self.join.api_url.get_secret_value())
            body["join"] = join
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def public_view(self) -> dict[str, Any]:
        """The request as it may be shown to people: secrets replaced by digests."""
        body = self.model_dump(mode="json", exclude={"machine_config", "join"})
        secret = self.machine_config.get_secret_value()
        body["machine_config"] = {"sha256": _sha256(secret), "bytes": len(secret.encode())}
        if self.join is not None:
            body["join"] = {"api_url": "**********", "mode": self.join.mode}
        return body


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Owner:
    """Whose machines these are: one talprov installation's provider instance.

    Providers tag what they create with both values and ``list_machines`` returns
    only machines carrying both, so two installations sharing an account, or two
    instances of one type, never see each other's machines.
    """

    installation: str
    instance: str


@dataclass(frozen=True)
class Machine:
    """A machine as a provider observes it."""

    infra_id: str
    state: MachineState
    request_id: str | None = None
    machine_uuid: str | None = None
    addresses: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Retry:
    """A step's "not yet": run me again after ``after`` seconds."""

    after: float
    reason: str = ""


StepResult = Retry | None

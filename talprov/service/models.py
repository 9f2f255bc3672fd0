"""Request and response bodies of the HTTP API (they make the OpenAPI document).

Field names follow Omni's MachineRequest (``talos_version``, ``extensions``,
``kernel_args``, ``meta_values``, ``provider_data``). Secrets go in, never out:
``config`` and ``join.api_url`` are write-only, and responses carry at most the
SHA-256 of the machine configuration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    WithJsonSchema,
)

from talprov.providers.labels import (
    MAX_LABELS,
    RESERVED_PREFIX,
    LabelKey,
    LabelValue,
    reserved_keys,
)
from talprov.providers.types import (
    REQUEST_ID_PATTERN,
    SUPPORTED_LINES_TEXT,
    TALOS_VERSION_PATTERN,
    Arch,
    GrpcTunnelMode,
    JoinSpec,
    MetaValue,
    Overlay,
    RequestFlag,
    Stage,
    leading_v_hint,
    malformed_talos_version,
    unsupported_line,
)
from talprov.scaler.models import MAX_SET_SIZE

#: Leaves room for ``-<index>`` in member ids (63 characters at most).
SET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$"

# Numbers and booleans of a body must be JSON numbers and booleans: pydantic's lax
# mode would read "3" as 3 and true as 1 (QA: machine_count "3" made a set of 3).
#: A set's size.
SetSize = Annotated[int, Field(strict=True, ge=0, le=MAX_SET_SIZE)]
#: A set's name in a body.
SetNameField = Annotated[str, Field(pattern=SET_NAME_PATTERN, max_length=52)]


def _supported_line(value: str) -> str:
    """``value`` when it is a Talos version of a minor line talprov carries the rules
    of; else ValueError naming the field and the lines, never the value (error
    bodies do not repeat what was sent). Request files and specs take a newer line
    with a warning on the terminal; an API client would never see that warning, and
    its machine would be checked and booted by another line's rules (or, for a
    version that does not exist, fail later in the worker), so the API refuses it.
    Pure."""
    if malformed_talos_version(value) is not None:
        raise ValueError("talos_version must be a Talos version like v1.13.9"
                         + leading_v_hint(value))
    relation = unsupported_line(value)
    if relation is not None:
        raise ValueError(f"talos_version is {relation} than the Talos versions talprov "
                         f"supports ({SUPPORTED_LINES_TEXT})")
    return value


#: A Talos version an API body may name: well-formed, of a line talprov supports.
ApiTalosVersion = Annotated[str, AfterValidator(_supported_line)]


def _not_reserved(key: str) -> str:
    # The key is the error's loc (labels.<key>.[key]): the message need not repeat it.
    if reserved_keys({key: ""}):
        raise ValueError(f"the {RESERVED_PREFIX} prefix is reserved (in any case) for the "
                         "labels talprov sets itself")
    return key


#: Labels of an API body: the rules of talprov.providers.labels.UserLabels, with a
#: reserved key refused at its own loc, one problem per key.
ApiLabels = Annotated[dict[Annotated[LabelKey, AfterValidator(_not_reserved)], LabelValue],
                      Field(max_length=MAX_LABELS)]
API_LABELS = TypeAdapter(ApiLabels)

#: Labels of a body as parsed: strings, at most MAX_LABELS, no reserved key; the
#: label rule itself is applied by service.context.build_request: a request or set
#: stored under the rule before Kubernetes' (revision 0009) is sent again unchanged
#: by a client replaying its create, which must be answered like any identical
#: replay. The schema is ApiLabels'.
ReplayableLabels = Annotated[
    dict[Annotated[str, AfterValidator(_not_reserved)], str],
    Field(max_length=MAX_LABELS), WithJsonSchema(API_LABELS.json_schema())]


class MachineTemplate(BaseModel):
    """What a machine is made from: the fields shared by requests and sets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    provider: str = Field(min_length=1, max_length=255, description="Provider instance name.")
    # Checked before the config is checked by this version's rules (422 at talos_version).
    # The pattern is in the schema only: validating it would answer with the regular
    # expression itself; _supported_line says it in words.
    talos_version: ApiTalosVersion = Field(
        json_schema_extra={"pattern": TALOS_VERSION_PATTERN}, examples=["v1.13.9"])
    arch: Arch = Arch.AMD64
    # Strict, as every door's: request files and cluster specs use the same types.
    secure_boot: RequestFlag = False
    extensions: list[str] = Field(
        default_factory=list, max_length=100,
        description="System extensions, e.g. siderolabs/iscsi-tools.",
    )
    kernel_args: list[str] = Field(default_factory=list, max_length=100)
    meta_values: list[MetaValue] = Field(default_factory=list, max_length=100)
    overlay: Overlay | None = None
    # The rule itself is build_request's (see ReplayableLabels).
    labels: ReplayableLabels = Field(
        default_factory=dict,
        description="Free-form labels; `role` = worker | controlplane orders scale-down "
        "of sets. Keys starting with `talprov.` are reserved for talprov's own labels.",
    )
    provider_data: dict[str, Any] = Field(
        default_factory=dict,
        description="Validated by the provider's own model; see GET /v1/providers.",
    )
    config: SecretStr | None = Field(
        default=None,
        description="Talos machine configuration (YAML text). Write-only: never returned.",
    )
    join: JoinSpec | None = Field(
        default=None, description="Omni join parameters. `api_url` is write-only."
    )
    grpc_tunnel: GrpcTunnelMode = Field(
        default=GrpcTunnelMode.UNSET,
        description="Omni's GrpcTunnelMode: `enabled` adds grpc_tunnel=true to the join URL, "
        "`disabled` removes it, `unset` keeps it as given.",
    )


class MachineRequestCreate(MachineTemplate):
    """A MachineRequest. Creating it again with the same body is harmless."""

    id: str | None = Field(
        default=None, pattern=REQUEST_ID_PATTERN, max_length=63,
        description="Stable id and idempotency key (DNS-label shaped). Without one the "
        "service generates an id (`m-` and 10 hex digits), and a retried POST makes "
        "another request: send an id to retry safely.",
    )


class MachineRequestView(BaseModel):
    """A request and its progress, as the service shows it: never a secret."""

    id: str
    provider: str
    stage: Stage
    step: str | None = Field(description="The step it is at (null when not in one).")
    machine_uuid: str | None
    infra_id: str | None = Field(description="The platform's id of the machine.")
    addresses: list[str]
    labels: dict[str, str]
    error: str | None
    talos_version: str
    marked_for_deletion: bool
    config_sha256: str | None = Field(description="SHA-256 of the machine config, if any.")
    join: bool = Field(description="Whether Omni join parameters were given.")
    created_at: datetime
    updated_at: datetime


class MachineRequestList(BaseModel):
    items: list[MachineRequestView]
    next: str | None = Field(
        default=None,
        description="With `limit`: pass as `after` to get the next page; null on the last.",
    )


class EventView(BaseModel):
    at: datetime
    message: str


class ForgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    reason: str = Field(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")


class ForgetResult(BaseModel):
    id: str
    actor: str = Field(description="The token name that asked, as recorded in the audit log.")
    reason: str
    left_behind: str = Field(
        description="What the forget left where it is, in words: a bare-metal machine stays "
                    "held, not wiped, until `talprov baremetal release NAME` frees it; any "
                    "other machine is left as it is, for the provider's own tools.")


class MachineRequestSetCreate(MachineTemplate):
    """A set of identical requests named `<name>-<index>`, kept at `machine_count`."""

    name: SetNameField
    machine_count: SetSize


class MachineRequestSetReplace(MachineTemplate):
    """A set's new template and size (``PUT``): the name is the one in the path."""

    name: SetNameField | None = Field(
        default=None, description="Optional: the path names the set; a name given here "
        "must be the same.")
    machine_count: SetSize


class MachineRequestSetScale(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    machine_count: SetSize


class SetMember(BaseModel):
    id: str
    stage: Stage


class SetFailure(BaseModel):
    member: str = Field(description="The member that failed last; it was replaced.")
    error: str
    at: datetime
    replacements: int = Field(
        description="Failed members replaced since a member last provisioned (0: whole again).")
    next_replacement_at: datetime | None = Field(
        description="No failed member is replaced before this (the backoff); null at 0.")


class MachineRequestSetView(BaseModel):
    name: str
    provider: str
    machine_count: int
    talos_version: str
    labels: dict[str, str]
    config_sha256: str | None
    deleting: bool = Field(description="Deletion asked; removed once its members are gone.")
    unreadable: str | None = Field(
        default=None,
        description="Why the set's sealed machine config and join URL cannot be read (a "
                    "different TALPROV_STORE_KEY); it then only shrinks and can be deleted, "
                    "or replaced (PUT) to seal it with this key.")
    members: list[SetMember]
    last_failure: SetFailure | None = Field(
        default=None, description="The last failed member the set replaced, and the backoff.")
    created_at: datetime
    updated_at: datetime


class MachineRequestSetList(BaseModel):
    items: list[MachineRequestSetView]
    next: str | None = Field(
        default=None,
        description="When the page is full: pass as `after` to get the next page; null on "
                    "the last.",
    )


class HealthView(BaseModel):
    ok: bool
    message: str


class ProviderView(BaseModel):
    name: str
    type: str
    concurrency: int
    health: HealthView
    provider_data_schema: dict[str, Any] = Field(description="JSON Schema of provider_data.")


class ProviderList(BaseModel):
    items: list[ProviderView]


class Problem(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: list[FieldProblem]


class Healthz(BaseModel):
    status: str
    store: str

"""What the store hands out: immutable records built from table rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr, ValidationError

from talprov.providers.types import STORED, MachineRequest, Stage
from talprov.store.crypto import SecretCodec
from talprov.store.errors import StaleRecord, StoreError, StoreKeyError
from talprov.timestamps import rfc3339


@dataclass(frozen=True)
class ProgressUpdate:
    """One request's step outcome, to be written only at ``expected_version``.

    What :meth:`talprov.store.store.Store.save_progress_many` writes, many in
    one transaction.
    """

    request_id: str
    expected_version: int
    stage: Stage
    step_index: int
    step_name: str | None
    state: dict[str, Any]
    error: str | None
    attempts: int
    next_attempt_at: datetime | None
    step_started_at: datetime | None
    infra_id: str | None
    machine_uuid: str | None
    addresses: Sequence[str]
    events: Sequence[str]
    #: The request as the writer read it, when it has it. The stored request
    #: never changes after it is created, so the store returns the new record
    #: with this one instead of decrypting and validating the stored one again.
    request: MachineRequest | None = None


SaveMany = Callable[..., "list[RequestRecord | StaleRecord]"]


def save_one(save_many: SaveMany, update: ProgressUpdate, now: datetime | None) -> RequestRecord:
    """``save_many([update])``'s record; raises its ``StaleRecord`` instead of returning it."""
    (outcome,) = save_many([update], now=now)
    if isinstance(outcome, StaleRecord):
        raise outcome
    return outcome


@dataclass(frozen=True)
class RequestRecord:
    """A request and where it is in its life, as last stored.

    ``request`` carries the decrypted machine config and join URL as
    ``SecretStr``; the other fields are never secret. Datetimes are aware UTC.
    ``version`` increases with every change of stage or progress and is what
    :meth:`Store.save_progress` checks. ``unreadable`` says why the sealed
    columns could not be decrypted (a different ``TALPROV_STORE_KEY``); the
    request then has no machine config and no join, so it can be shown and
    deleted, but must not be provisioned.
    """

    request: MachineRequest
    fingerprint: str
    stage: Stage
    step_index: int
    step_name: str | None
    state: dict[str, Any]
    error: str | None
    attempts: int
    next_attempt_at: datetime | None
    step_started_at: datetime | None
    infra_id: str | None
    machine_uuid: str | None
    addresses: tuple[str, ...]
    marked_for_deletion: bool
    created_at: datetime
    updated_at: datetime
    version: int
    unreadable: str | None = None

    @property
    def id(self) -> str:
        return self.request.id


@dataclass(frozen=True)
class RequestSetRecord:
    """A stored MachineRequestSet document and its secrets, as last written.

    ``document`` holds the non-secret fields the service stored; the machine
    config and join URL come back decrypted but wrapped in ``SecretStr`` so that
    a repr or a log line never shows them. Datetimes are aware UTC; ``version``
    increases with every change and is what ``expected_version`` is checked against.
    ``unreadable`` says why the sealed columns could not be decrypted (a
    different ``TALPROV_STORE_KEY``); the machine config is then empty and the
    join URL None.
    """

    name: str
    document: dict[str, Any]
    machine_config: SecretStr
    join_url: SecretStr | None
    created_at: datetime
    updated_at: datetime
    version: int
    unreadable: str | None = None


@dataclass(frozen=True)
class Event:
    """One line of a request's event log."""

    request_id: str
    at: datetime
    message: str


@dataclass(frozen=True)
class AuditEntry:
    """Who removed a request from the store without deprovisioning it, and why."""

    request_id: str
    at: datetime
    actor: str
    reason: str


def fresh_progress_columns() -> dict[str, Any]:
    """Column values of a request that has not started: PENDING, step 0, no lease."""
    return {
        "stage": Stage.PENDING.value,
        "step_index": 0,
        "step_name": None,
        "state": "{}",
        "error": None,
        "attempts": 0,
        "next_attempt_at": None,
        "step_started_at": None,
        "infra_id": None,
        "machine_uuid": None,
        "addresses": "[]",
        "marked_for_deletion": False,
        "lease_owner": None,
        "lease_until": None,
    }


def utc_or_now(moment: datetime | None) -> datetime:
    """``moment`` in UTC, or the current time; ValueError for a naive datetime
    (its zone would be a guess)."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the store; use an aware UTC datetime")
    return moment.astimezone(UTC)


def dump_json(value: Any, *, what: str) -> str:
    """Compact, key-sorted JSON; :class:`StoreError` (naming ``what``) if not serialisable."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        # The message names a type ("Object of type X ..."), never a value.
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from None


def record_from_row(
    row: sa.Row[Any], codec: SecretCodec, known: MachineRequest | None = None
) -> RequestRecord:
    """Rebuild a :class:`RequestRecord`. Encrypted data the codec's key cannot read
    does not raise: the record comes back without the secrets and with
    ``unreadable`` set, so one such request cannot block reading all others.
    Raises :class:`StoreError` when the stored request no longer validates.
    ``known``: the row's request as already read (it never changes once stored),
    which spares decrypting and validating it."""
    if known is not None and known.id == row.id:
        return _record(row, known)
    body: dict[str, Any] = json.loads(row.body)
    unreadable = None
    try:
        body["machine_config"] = codec.decode(row.machine_config)
        if row.join_api_url is not None:
            join: dict[str, Any] = json.loads(row.join_options or "{}")
            join["api_url"] = codec.decode(row.join_api_url)
            body["join"] = join
    except StoreKeyError as exc:
        # The message names the cause (the key differs), never the key or the data.
        unreadable = f"stored secrets unreadable: {exc}"
        body.pop("machine_config", None)
        body.pop("join", None)
    try:
        request = MachineRequest.model_validate(body, context=STORED)
    except ValidationError as exc:
        # Only locations and messages: pydantic's own text would quote input values.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise StoreError(
            f"request {row.id}: stored request no longer validates: {problems}"
        ) from None
    return _record(row, request, unreadable)


def _record(row: sa.Row[Any], request: MachineRequest,
            unreadable: str | None = None) -> RequestRecord:
    return RequestRecord(
        request=request,
        fingerprint=row.fingerprint,
        stage=Stage(row.stage),
        step_index=row.step_index,
        step_name=row.step_name,
        state=json.loads(row.state),
        error=row.error,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        step_started_at=row.step_started_at,
        infra_id=row.infra_id,
        machine_uuid=row.machine_uuid,
        addresses=tuple(json.loads(row.addresses)),
        marked_for_deletion=bool(row.marked_for_deletion),
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        unreadable=unreadable,
    )


def public_view(record: RequestRecord) -> dict[str, Any]:
    """A request as shown to people and scripts, never a secret: the one view of a
    request's row that ``machine list|get|create|delete|retry`` and the API's list
    and GET all give. The machine config shows only as its SHA-256, the Omni join
    only as whether one was given."""
    return {
        "id": record.request.id,
        "provider": record.request.provider,
        "stage": record.stage.value,
        "step": record.step_name,
        "machine_uuid": record.machine_uuid,
        "infra_id": record.infra_id,
        "addresses": list(record.addresses),
        "labels": dict(record.request.labels),
        "error": record.error or record.unreadable,
        "talos_version": record.request.talos_version,
        "marked_for_deletion": record.marked_for_deletion,
        "config_sha256": config_digest(record.request),
        "join": record.request.join is not None,
        "created_at": rfc3339(record.created_at),
        "updated_at": rfc3339(record.updated_at),
    }


def config_digest(request: MachineRequest) -> str | None:
    """SHA-256 (hex) of the request's machine config, or None without one: shows
    which config a request has without showing the config."""
    text = request.machine_config.get_secret_value()
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def forgotten_leaves(record: RequestRecord, provider_type: str | None) -> str:
    """What force-forgetting ``record`` leaves, in words, for ``machine forget``
    and the API's forget alike: a bare-metal machine stays held until `baremetal
    release`; any other machine is no longer talprov's to remove (QA: every
    forget named `baremetal release`). ``provider_type`` is its instance's type,
    None when the instance is no longer configured: then no bare-metal advice,
    the type not being known. Pure."""
    if provider_type == "baremetal":
        if record.infra_id:  # the machine's name in the inventory
            return (f"its bare-metal machine {record.infra_id} stays held, not wiped, until "
                    f"`talprov baremetal release {record.infra_id}` frees it")
        return ("its bare-metal machine, if it holds one, stays held, not wiped, until "
                "`talprov baremetal release NAME` frees it (`talprov baremetal list` "
                "names it)")
    machine = f"its machine {record.infra_id}" if record.infra_id else "any machine it had"
    return (f"its provider was not called: {machine} is left as it is, and no talprov "
            "command removes it any more: remove it with the provider's own tools if it "
            "is not to stay")

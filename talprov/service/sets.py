"""MachineRequestSets: keep N identical requests named ``<set>-<index>``.

A set is stored as a document in the store's cluster-spec table under a
reserved name (``machine-request-set/<name>``); its machine config and join URL
are encoded with the store's own secret codec (encrypted when
``TALPROV_STORE_KEY`` is set), exactly as request rows are. Members are the
requests labelled ``talprov.set=<name>`` for the set's provider.

Reconciling a set is deterministic: new members take the lowest free indices
and victims follow a fixed order, so two replicas reconciling the same set at
once converge on the same requests (creates are idempotent on id, deletions
are idempotent too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from talprov.providers.errors import Conflict
from talprov.providers.types import JoinSpec, MachineRequest, Stage
from talprov.store.crypto import SecretCodec
from talprov.store.records import RequestRecord
from talprov.store.store import Store

SET_LABEL = "talprov.set"
_PREFIX = "machine-request-set/"
ROLE_LABELS = ("role", "talprov.role")
CONTROL_PLANE_ROLES = frozenset({"controlplane", "control-plane", "control_plane", "init"})


@dataclass(frozen=True)
class RequestSet:
    """A stored set: its template (a request without id), size and lifecycle."""

    name: str
    template: MachineRequest  # id is a placeholder; members get their own
    machine_count: int
    deleting: bool
    fingerprint: str
    created_at: datetime
    updated_at: datetime

    def member_request(self, index: int) -> MachineRequest:
        labels = {**self.template.labels, SET_LABEL: self.name}
        return self.template.model_copy(update={"id": member_id(self.name, index),
                                                "labels": labels})


def member_id(set_name: str, index: int) -> str:
    return f"{set_name}-{index}"


def set_fingerprint(template: MachineRequest, machine_count: int) -> str:
    """What decides whether a re-create of a set is the same set."""
    text = f"{template.fingerprint()}/{machine_count}"
    return hashlib.sha256(text.encode()).hexdigest()


class SetRepository:
    """Reads and writes set documents. ``codec`` must use the store's key."""

    def __init__(self, store: Store, codec: SecretCodec) -> None:
        self.store = store
        self.codec = codec

    def get(self, name: str) -> RequestSet | None:
        doc = self.store.get_cluster(_PREFIX + name)
        return None if doc is None else self._decode(name, doc)

    def all(self) -> list[RequestSet]:
        names = [n[len(_PREFIX):] for n in self.store.list_clusters() if n.startswith(_PREFIX)]
        found = [self.get(n) for n in names]
        return [s for s in found if s is not None]

    def put(self, request_set: RequestSet) -> None:
        template = request_set.template
        join = template.join
        doc: dict[str, Any] = {
            "kind": "MachineRequestSet",
            "template": template.model_dump(mode="json", exclude={"machine_config", "join"}),
            "machine_config": self.codec.encode(template.machine_config.get_secret_value()),
            "join_api_url": (
                None if join is None else self.codec.encode(join.api_url.get_secret_value())
            ),
            "join_options": (
                None if join is None else join.model_dump(mode="json", exclude={"api_url"})
            ),
            "machine_count": request_set.machine_count,
            "deleting": request_set.deleting,
            "fingerprint": request_set.fingerprint,
            "created_at": request_set.created_at.isoformat(),
            "updated_at": request_set.updated_at.isoformat(),
        }
        self.store.put_cluster(_PREFIX + request_set.name, doc)

    def remove(self, name: str) -> None:
        self.store.delete_cluster(_PREFIX + name)

    def _decode(self, name: str, doc: dict[str, Any]) -> RequestSet:
        body = dict(doc["template"])
        body["machine_config"] = SecretStr(self.codec.decode(doc["machine_config"]))
        if doc.get("join_api_url") is not None:
            join = dict(doc.get("join_options") or {})
            join["api_url"] = self.codec.decode(doc["join_api_url"])
            body["join"] = JoinSpec.model_validate(join)
        return RequestSet(
            name=name,
            template=MachineRequest.model_validate(body),
            machine_count=int(doc["machine_count"]),
            deleting=bool(doc.get("deleting", False)),
            fingerprint=str(doc["fingerprint"]),
            created_at=datetime.fromisoformat(doc["created_at"]),
            updated_at=datetime.fromisoformat(doc["updated_at"]),
        )

    def members(self, request_set: RequestSet) -> list[RequestRecord]:
        """Every request of the set that is not gone, ordered by id."""
        return self.store.list_requests(
            provider=request_set.template.provider, labels={SET_LABEL: request_set.name}
        )


def role_of(labels: dict[str, str]) -> str:
    for key in ROLE_LABELS:
        if key in labels:
            return labels[key].lower()
    return ""


def scale_down_order(members: Sequence[RequestRecord]) -> list[RequestRecord]:
    """Members in the order they are removed when a set shrinks (Omni's order).

    Unallocated first (anything not provisioned: pending, provisioning, failed),
    then workers before control planes, then oldest first; ties by id. Pure.
    """

    def key(record: RequestRecord) -> tuple[int, int, datetime, str]:
        allocated = int(record.stage == Stage.PROVISIONED)
        control_plane = int(role_of(record.request.labels) in CONTROL_PLANE_ROLES)
        return (allocated, control_plane, record.created_at, record.request.id)

    return sorted(members, key=key)


@dataclass(frozen=True)
class SetChanges:
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    removed_set: bool = False


def reconcile_set(repo: SetRepository, request_set: RequestSet) -> SetChanges:
    """Create or delete members until the live ones number ``machine_count``.

    Live members are those not deprovisioning. Idempotent; raises ``StoreError``.
    A deleting set is removed from the store once it has no member left.
    """
    members = repo.members(request_set)
    live = [m for m in members if m.stage != Stage.DEPROVISIONING]
    want = 0 if request_set.deleting else request_set.machine_count
    if request_set.deleting and not members:
        repo.remove(request_set.name)
        return SetChanges(removed_set=True)
    created: list[str] = []
    deleted: list[str] = []
    if len(live) < want:
        taken = {m.request.id for m in members}
        index = 0
        while len(live) + len(created) < want:
            candidate = member_id(request_set.name, index)
            index += 1
            if candidate in taken:
                continue
            try:
                repo.store.create_request(request_set.member_request(index - 1))
            except Conflict:
                continue  # the id belongs to a request outside the set; skip it
            created.append(candidate)
    elif len(live) > want:
        for victim in scale_down_order(live)[: len(live) - want]:
            repo.store.request_deletion(victim.request.id)
            deleted.append(victim.request.id)
    return SetChanges(created=tuple(created), deleted=tuple(deleted))


def now_utc() -> datetime:
    return datetime.now(UTC)


def template_digest(template: MachineRequest) -> str | None:
    text = template.machine_config.get_secret_value()
    return hashlib.sha256(text.encode()).hexdigest() if text else None


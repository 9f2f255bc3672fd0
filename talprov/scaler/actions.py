"""The planner's output: actions with reasons, per-set status, orphan reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from talprov.providers.types import MachineRequest
from talprov.timestamps import rfc3339


class ActionKind(StrEnum):
    CREATE = "create"
    DELETE = "delete"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Action:
    """One change. ``request`` is the id acted on: the new request for create and
    replace, the victim for delete. A replace creates ``create`` and deletes
    ``replaces`` in the same pass. Orphan deletes carry ``infra_id``/``provider``.
    ``domain`` is the failure domain created in, or for a delete the victim's
    (None when its class has none).
    """

    action: ActionKind
    set: str
    request: str
    reason: str
    domain: str | None = None
    create: MachineRequest | None = field(default=None, repr=False)
    template_hash: str | None = None
    replaces: str | None = None
    infra_id: str | None = None
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view without secrets (the request body is left out)."""
        body: dict[str, Any] = {
            "action": self.action.value,
            "set": self.set,
            "request": self.request,
            "reason": self.reason,
        }
        for key in ("domain", "replaces", "infra_id", "provider"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class SetStatus:
    """A set as observed (not as planned), with why anything is held back.

    ``unreadable`` counts requests whose stored secrets this store key cannot read;
    they are in none of provisioned, provisioning and failed (they are unhealthy).
    """

    name: str
    role: str
    desired: int
    provisioned: int
    provisioning: int
    failed: int
    outdated: int
    deleting: int
    unhealthy: int
    unreadable: int = 0
    backoff_until: datetime | None = None
    circuit_breaker_open: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "desired": self.desired,
            "provisioned": self.provisioned,
            "provisioning": self.provisioning,
            "failed": self.failed,
            "outdated": self.outdated,
            "deleting": self.deleting,
            "unhealthy": self.unhealthy,
            "unreadable": self.unreadable,
            "backoff_until": None if self.backoff_until is None else rfc3339(self.backoff_until),
            "circuit_breaker_open": self.circuit_breaker_open,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """An orphan and what this pass does about it: delete, wait (grace) or hold (limit)."""

    infra_id: str
    provider: str
    decision: str
    request_id: str | None = None


@dataclass(frozen=True)
class Plan:
    cluster: str
    actions: tuple[Action, ...]
    sets: tuple[SetStatus, ...] = ()
    orphans: tuple[OrphanReport, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in ActionKind}
        for action in self.actions:
            counts[action.action.value] += 1
        return counts

    @property
    def empty(self) -> bool:
        return not self.actions

    def to_dict(self) -> dict[str, Any]:
        """The ``plan -o json`` shape: cluster, actions, summary (plus sets and orphans)."""
        return {
            "cluster": self.cluster,
            "actions": [action.to_dict() for action in self.actions],
            "summary": self.summary,
            "sets": [status.to_dict() for status in self.sets],
            "orphans": [
                {"infra_id": o.infra_id, "provider": o.provider, "decision": o.decision,
                 "request": o.request_id}
                for o in self.orphans
            ],
        }

"""The record of an applied cluster: its spec with the secrets sealed by the store's
key (:func:`seal_spec`, :func:`unseal_spec`) and what the scaler remembers between
passes (:class:`ClusterState`), and the error for a record this key cannot read
(:class:`UnreadableCluster`). The scaler (:mod:`talprov.scaler.apply`) loads and
saves it; nothing here talks to a provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from talprov.errors import BeingDeleted
from talprov.providers.types import STORED
from talprov.scaler.models import ClusterSpec
from talprov.scaler.observed import FAILED_CREATES, SetBackoff
from talprov.store.errors import StoreKeyError
from talprov.store.store import Store

#: What an operator can do about a cluster this store key cannot read.
UNREADABLE_REMEDY = ("use the key it was recorded with, destroy it, or apply its spec "
                     "again with --reseal to record it anew with the current key "
                     "(unencrypted when none is set)")


class UnreadableCluster(StoreKeyError):
    """Cluster ``cluster``'s sealed secrets (machine configs, join URL) cannot be read
    with this store key. ``reason`` says why, never a key or a secret."""

    def __init__(self, cluster: str, reason: str) -> None:
        super().__init__(f"cluster {cluster}: {reason}; {UNREADABLE_REMEDY}")
        self.cluster = cluster
        self.reason = reason


class ClusterBeingDestroyed(BeingDeleted):
    """Cluster ``cluster`` is being destroyed: its spec may not change until the
    destroy has finished (recording one would silently undo the destroy)."""

    def __init__(self, cluster: str) -> None:
        super().__init__(
            f"cluster {cluster} is being destroyed; nothing changed: a destroy cannot "
            "be undone (the machines it deletes are gone with it). Wait until it has "
            "finished (`talprov reconcile` or a running `talprov serve` carries it out; "
            f"`talprov status {cluster}` shows what is left), then apply its spec again. "
            "A request whose machine cannot be deleted (its provider instance left the "
            "config, its credentials refused) holds the destroy: `talprov machine forget "
            "ID --reason ...` lets it go, leaving its machine to the provider's own tools")
        self.cluster = cluster


def seal_spec(spec: ClusterSpec, store: Store) -> dict[str, Any]:
    """The spec as a JSON document whose secrets are sealed by the store's key.

    Machine configs hold CA keys and the join URL a token: they are the only
    secret fields of a resolved spec and are stored through ``Store.seal``.
    """
    body: dict[str, Any] = json.loads(spec.model_dump_json(by_alias=True))
    if spec.join is not None:
        body["join"]["api_url"] = {"sealed": store.seal(spec.join.api_url.get_secret_value())}
    for name, machine_set in spec.sets.items():
        body["sets"][name]["machine_config"] = {
            "sealed": store.seal(machine_set.machine_config.get_secret_value())
        }
    return body


def unseal_spec(body: Mapping[str, Any], store: Store, *,
                without_secrets: bool = False) -> ClusterSpec:
    """The inverse of :func:`seal_spec`. Raises ``StoreKeyError`` for a wrong key.
    ``without_secrets``: the spec with no machine config and no join, unsealing
    nothing (enough to destroy the cluster, never to create a machine)."""
    data = json.loads(json.dumps(body))
    if without_secrets:
        data["join"] = None
        for machine_set in data["sets"].values():
            machine_set["machine_config"] = ""
        return ClusterSpec.model_validate(data, context=STORED)
    if data.get("join") is not None:
        data["join"]["api_url"] = SecretStr(store.unseal(data["join"]["api_url"]["sealed"]))
    for machine_set in data["sets"].values():
        machine_set["machine_config"] = SecretStr(
            store.unseal(machine_set["machine_config"]["sealed"])
        )
    return ClusterSpec.model_validate(data, context=STORED)


@dataclass
class ClusterState:
    """What the scaler remembers about a cluster between passes."""

    spec: ClusterSpec
    destroying: bool = False
    backoff: dict[str, SetBackoff] = field(default_factory=dict)
    orphans_seen: dict[str, datetime] = field(default_factory=dict)
    #: Failed request ids already counted towards their set's backoff.
    counted_failures: set[str] = field(default_factory=set)
    #: Why this store key cannot read the spec's secrets; ``spec`` then has none,
    #: and ``sealed_spec`` (the spec as stored) is written back as it was.
    unreadable: str | None = None
    sealed_spec: dict[str, Any] | None = None

    def dump(self, store: Store) -> dict[str, Any]:
        return {
            "spec": seal_spec(self.spec, store) if self.sealed_spec is None
            else self.sealed_spec,
            "destroying": self.destroying,
            "backoff": {k: {"failures": v.failures, "until": v.until.isoformat(),
                            "cause": v.cause}
                        for k, v in self.backoff.items()},
            "orphans_seen": {k: v.isoformat() for k, v in self.orphans_seen.items()},
            "counted_failures": sorted(self.counted_failures),
        }

    @classmethod
    def load(cls, body: Mapping[str, Any], store: Store, *,
             unreadable_ok: bool = False) -> ClusterState:
        """The state in ``body``. Raises ``StoreKeyError`` when the spec's secrets
        cannot be read, unless ``unreadable_ok`` (then ``unreadable`` says why)."""
        unreadable, sealed = None, None
        try:
            spec = unseal_spec(body["spec"], store)
        except StoreKeyError as exc:
            if not unreadable_ok:
                raise
            unreadable, sealed = str(exc), dict(body["spec"])
            spec = unseal_spec(body["spec"], store, without_secrets=True)
        return cls(
            spec=spec, unreadable=unreadable, sealed_spec=sealed,
            destroying=bool(body.get("destroying", False)),
            backoff={k: SetBackoff(failures=int(v["failures"]),
                                   until=datetime.fromisoformat(v["until"]),
                                   cause=str(v.get("cause", FAILED_CREATES)))
                     for k, v in body.get("backoff", {}).items()},
            orphans_seen={k: datetime.fromisoformat(v)
                          for k, v in body.get("orphans_seen", {}).items()},
            counted_failures=set(body.get("counted_failures", [])),
        )

"""Request sets (Omni's MachineRequestSets): keep N identical requests named ``<set>-<index>``.

A request set is a row of the store's ``request_sets`` table: the template and
size as a JSON document, the template's machine config and join URL in the
store's sealed columns (encrypted when ``TALPROV_STORE_KEY`` is set), exactly
as request rows keep theirs. Not to be confused with a cluster's *machine set*
(:mod:`talprov.scaler`); the two are told apart by their owner labels
(:mod:`talprov.providers.labels`).

Members are the requests of the set's provider instance labelled
``talprov.request-set=<name>``, plus *legacy members*: requests made by versions
before that label existed, which carry ``talprov.set=<name>``, an id
``<name>-<n>`` and no ``talprov.cluster`` label (so a cluster's machine set of the
same name never counts).

Reconciling a set is deterministic: new members take the lowest free indices
and victims follow a fixed order, so two replicas reconciling the same set at
once converge on the same requests (creates are idempotent on id, deletions
are idempotent too).

A set is kept at its size by working machines: a failed member (its machine
vanished, or a step failed for good) is deleted and a fresh member created in
its place. The first replacement is immediate; each further one before a
member provisions again waits twice as long (30 s up to 10 min; members
replaced in the same round share one doubling), so a
permanent error such as a bad subnet does not loop. The replacement is
written to the set (at the version read) before the member is deleted, so of
two replicas only one replaces it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from talprov.errors import Conflict
from talprov.providers.labels import LABEL_CLUSTER, LABEL_REQUEST_SET, LABEL_SET, is_control_plane
from talprov.providers.types import STORED, JoinSpec, MachineRequest, Stage
from talprov.scaler.observed import SetBackoff, next_backoff
from talprov.scaler.priorities import RequestSetMember, request_set_victims
from talprov.secrets import redact
from talprov.store.errors import StaleRecord
from talprov.store.records import RequestRecord, RequestSetRecord
from talprov.store.store import Store
from talprov.timestamps import rfc3339

log = logging.getLogger(__name__)

#: The wait after the first replacement of a failed member; it doubles with each
#: further one until a member provisions again, up to REPLACEMENT_BACKOFF_CAP.
REPLACEMENT_BACKOFF_BASE = timedelta(seconds=30)
REPLACEMENT_BACKOFF_CAP = timedelta(minutes=10)


@dataclass(frozen=True)
class Replacements:
    """Failed members a set replaced since a member last provisioned.

    ``failures`` counts replaced members (0 once the set is whole and
    provisioned again); no failed member is replaced before ``not_before``.
    ``rounds`` counts the rounds that replaced some: the backoff doubles per
    round, not per member, since members failing together mostly share one
    cause (a bad subnet) and a set of ten should not wait ten doublings after
    its first attempt. The last failure (member, error, when) stays for people
    to see.
    """

    failures: int
    not_before: datetime
    last_member: str
    last_error: str
    last_at: datetime
    rounds: int = 0

    def document(self) -> dict[str, Any]:
        """The JSON kept in the set's document."""
        return {"failures": self.failures, "not_before": rfc3339(self.not_before),
                "last_member": self.last_member, "last_error": self.last_error,
                "last_at": rfc3339(self.last_at), "rounds": self.rounds}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Replacements:
        """Read back :meth:`document`'s JSON; raises ``KeyError``/``ValueError`` when malformed."""
        # Documents written before ``rounds`` existed counted rounds in ``failures``.
        return cls(int(doc["failures"]), datetime.fromisoformat(doc["not_before"]),
                   str(doc["last_member"]), str(doc["last_error"]),
                   datetime.fromisoformat(doc["last_at"]),
                   int(doc.get("rounds", doc["failures"])))


@dataclass(frozen=True)
class RequestSet:
    """A set: its template (a request without id), size and lifecycle.

    ``version`` is the stored version this set was read at (None for one not
    read from the store); writing it back then fails with ``StaleRecord`` if
    the set changed in between. ``created_at``/``updated_at`` of a set read
    from the store are the store's.
    """

    name: str
    template: MachineRequest  # id is a placeholder; members get their own
    machine_count: int
    deleting: bool
    fingerprint: str
    created_at: datetime
    updated_at: datetime
    version: int | None = None
    #: Failed members replaced lately; a new template (PUT) starts it over.
    replacements: Replacements | None = None
    #: Why the stored machine config and join URL cannot be read (another
    #: ``TALPROV_STORE_KEY``); the template then has neither. Such a set can be
    #: shown, scaled down and deleted, never grown: a member without its config
    #: would make a machine that never becomes a node. A PUT seals it anew.
    unreadable: str | None = None

    @property
    def instance(self) -> str:
        """The provider instance every member is created on."""
        return self.template.provider

    def scaled(self, machine_count: int, now: datetime) -> RequestSet:
        """This set at ``machine_count`` members (a new fingerprint, updated at
        ``now``, written back at the version it was read at). Raises ``Conflict``
        for a set being deleted, and for growing a set whose secrets are
        unreadable. Pure."""
        if self.deleting:
            raise Conflict(f"set {self.name} is being deleted")
        if self.unreadable is not None and machine_count > self.machine_count:
            raise Conflict(f"set {self.name} cannot grow: {self.unreadable}; scale it down, "
                           "delete it, or replace it (PUT) to seal it with this key")
        return replace(self, machine_count=machine_count, updated_at=now,
                       fingerprint=set_fingerprint(self.template, machine_count))

    def for_deletion(self, now: datetime) -> RequestSet:
        """This set being deleted (what the API's DELETE and ``talprov set delete``
        store): its size kept, updated at ``now``, written as a new version (a
        deletion is the last word), its replacements dropped (a set being deleted
        replaces nothing). Idempotent; pure."""
        return replace(self, deleting=True, updated_at=now, version=None, replacements=None)

    def public_view(self, members: Sequence[RequestRecord]) -> dict[str, Any]:
        """The set as shown to people and scripts (the CLI and the API): never a
        secret; the machine config only as its SHA-256."""
        text = self.template.machine_config.get_secret_value()
        return {
            "name": self.name,
            "provider": self.instance,
            "machine_count": self.machine_count,
            "talos_version": self.template.talos_version,
            "labels": dict(self.template.labels),
            "config_sha256": hashlib.sha256(text.encode()).hexdigest() if text else None,
            "deleting": self.deleting,
            "unreadable": self.unreadable,
            "members": [{"id": m.request.id, "stage": m.stage.value} for m in members],
            "last_failure": self._last_failure(),
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }

    def _last_failure(self) -> dict[str, Any] | None:
        found = self.replacements
        if found is None:
            return None
        backing_off = found.failures > 0
        return {"member": found.last_member, "error": found.last_error,
                "at": rfc3339(found.last_at), "replacements": found.failures,
                "next_replacement_at": rfc3339(found.not_before) if backing_off else None}

    def member_request(self, index: int) -> MachineRequest:
        """The request of member ``index``: the template, its id and owner label."""
        labels = {**self.template.labels, LABEL_REQUEST_SET: self.name}
        return self.template.model_copy(update={"id": member_id(self.name, index),
                                                "labels": labels})


def member_id(set_name: str, index: int) -> str:
    """The id of member ``index`` of request set ``set_name``."""
    return f"{set_name}-{index}"


def is_legacy_member(set_name: str, record: RequestRecord) -> bool:
    """Whether ``record`` is a member of request set ``set_name`` made before
    members had their own owner label. Pure.

    Old versions labelled members ``talprov.set=<set>``, the label cluster
    machine sets use too; only an id ``<set>-<n>`` and the lack of a cluster
    label tell such a member from a cluster's machine.
    """
    labels = record.request.labels
    return (
        labels.get(LABEL_SET) == set_name
        and LABEL_CLUSTER not in labels
        and LABEL_REQUEST_SET not in labels
        and re.fullmatch(re.escape(set_name) + r"-[0-9]+", record.request.id) is not None
    )


def set_fingerprint(template: MachineRequest, machine_count: int) -> str:
    """What decides whether a re-create of a set is the same set."""
    text = f"{template.fingerprint()}/{machine_count}"
    return hashlib.sha256(text.encode()).hexdigest()


class SetRepository:
    """Reads and writes sets in the store's ``request_sets`` table (which seals
    their machine config and join URL itself)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, name: str) -> RequestSet | None:
        """The stored set or None; raises ``StoreKeyError`` for a missing/wrong key."""
        record = self.store.get_request_set(name)
        return None if record is None else _from_record(record)

    def all(self) -> list[RequestSet]:
        """Every stored set, ordered by name (one removed meanwhile is left out)."""
        found = [self.get(n) for n in self.store.list_request_sets()]
        return [s for s in found if s is not None]

    def page(self, *, limit: int, after: str | None = None,
             instances: Collection[str] | None = None) -> list[RequestSet]:
        """At most ``limit`` sets whose names sort after ``after``, by name; with
        ``instances``, only sets of those provider instances (filtered in the
        store's read, so a page is full when more such sets exist). Read-only."""
        def on_instances(document: dict[str, Any]) -> bool:
            return instances is None or document["template"]["provider"] in instances

        names = self.store.request_set_page(limit=limit, after=after, keep=on_instances)
        found = [self.get(n) for n in names]
        return [s for s in found if s is not None]

    def put(self, request_set: RequestSet, *, create_only: bool = False) -> RequestSet:
        """Store the set and return it as stored (the store's timestamps and version).

        Idempotent for an unchanged set. Raises ``StaleRecord`` when
        ``request_set.version`` is set and the stored set has moved on (or was
        removed meanwhile), or with ``create_only`` when the set exists at all
        (so that one of several concurrent creators wins); other ``StoreError``
        from the store.
        """
        template = request_set.template
        join = template.join
        # An unreadable set's template has no secrets: keep the sealed ones as stored.
        secret = None if request_set.unreadable else template.machine_config.get_secret_value()
        document: dict[str, Any] = {
            "kind": "MachineRequestSet",
            "template": template.model_dump(mode="json", exclude={"machine_config", "join"}),
            "join_options": (
                None if join is None else join.model_dump(mode="json", exclude={"api_url"})
            ),
            "machine_count": request_set.machine_count,
            "deleting": request_set.deleting,
            "fingerprint": request_set.fingerprint,
        }
        if request_set.replacements is not None:
            document["replacements"] = request_set.replacements.document()
        self.store.put_request_set(
            request_set.name,
            document,
            machine_config=secret,
            join_url=None if join is None else join.api_url.get_secret_value(),
            expected_version=request_set.version,
            create_only=create_only,
            now=request_set.updated_at,
        )
        stored = self.get(request_set.name)
        if stored is None:
            raise StaleRecord(f"request set {request_set.name} was removed while being written")
        return stored

    def remove(self, request_set: RequestSet) -> None:
        """Remove the set; idempotent. Raises ``StaleRecord`` when the set was read
        from the store and has changed since."""
        self.store.delete_request_set(request_set.name, expected_version=request_set.version)

    def members(self, request_set: RequestSet) -> list[RequestRecord]:
        """Every request of the set that is not gone, ordered by id: those with the
        set's owner label and its legacy members, on the set's provider instance.
        Read-only; raises ``StoreError``."""
        name, instance = request_set.name, request_set.instance
        owned = self.store.list_requests(provider=instance, labels={LABEL_REQUEST_SET: name})
        legacy = [r for r in self.store.list_requests(provider=instance, labels={LABEL_SET: name})
                  if is_legacy_member(name, r)]
        return sorted([*owned, *legacy], key=lambda r: r.request.id)


def scale_down_order(members: Sequence[RequestRecord]) -> list[RequestRecord]:
    """Members in the order they are removed when a set shrinks, as
    :func:`talprov.scaler.priorities.request_set_victims` decides it. Pure."""
    by_id = {m.request.id: m for m in members}
    ranked = [
        RequestSetMember(m.request.id, m.stage == Stage.PROVISIONED,
                         is_control_plane(m.request.labels), m.created_at.timestamp(),
                         marked=m.marked_for_deletion)
        for m in members
    ]
    return [by_id[v.request_id] for v in request_set_victims(ranked, len(ranked))]


@dataclass(frozen=True)
class SetChanges:
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    removed_set: bool = False


def reconcile_set(repo: SetRepository, request_set: RequestSet,
                  *, now: datetime | None = None) -> SetChanges:
    """Create or delete members until the live ones number ``machine_count``, and
    replace failed members (see the module's docstring) as of ``now`` (default:
    the wall clock).

    Live members are those not deprovisioning. Idempotent; raises ``StoreError``.
    A deleting set is removed from the store once it has no member left. A set
    whose secrets are unreadable only shrinks: it creates and replaces nothing.
    """
    moment = now or datetime.now(UTC)
    members = repo.members(request_set)
    want = 0 if request_set.deleting else request_set.machine_count
    if request_set.deleting and not members:
        try:
            repo.remove(request_set)
        except StaleRecord:
            # Changed since it was read: the next round re-reads and decides again.
            return SetChanges()
        return SetChanges(removed_set=True)
    deleted: list[str] = []
    if not request_set.deleting and request_set.unreadable is None:
        try:
            deleted = _replace_failed(repo, request_set, members, moment)
        except StaleRecord:
            return SetChanges()  # another writer changed the set: decide next round
        if deleted:
            members = repo.members(request_set)
    live = [m for m in members if m.stage != Stage.DEPROVISIONING]
    created: list[str] = []
    if len(live) < want and request_set.unreadable is None:
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


def _replace_failed(repo: SetRepository, request_set: RequestSet,
                    members: Sequence[RequestRecord], now: datetime) -> list[str]:
    """Delete the set's failed members when their replacement is due; their ids.

    The new count and backoff are written to the set first, at the version it
    was read at (``StaleRecord`` when another writer was first: nothing is
    deleted). A set whose live members are all provisioned starts over at 0.
    """
    failed = [m for m in members if m.stage == Stage.FAILED]
    known = request_set.replacements
    if not failed:
        live = [m for m in members if m.stage != Stage.DEPROVISIONING]
        whole = len(live) == request_set.machine_count and all(
            m.stage == Stage.PROVISIONED for m in live)
        if known is not None and known.failures and whole:
            repo.put(replace(request_set, updated_at=now,
                             replacements=replace(known, failures=0, not_before=now,
                                                  rounds=0)))
        return []
    if known is not None and known.failures and now < known.not_before:
        return []  # backing off; the failed members stay visible meanwhile
    backing_off = known is not None and known.failures > 0
    previous = SetBackoff(known.rounds, known.not_before) if known and backing_off else None
    backoff = next_backoff(previous, now, base=REPLACEMENT_BACKOFF_BASE,
                           cap=REPLACEMENT_BACKOFF_CAP)
    before = known.failures if known and backing_off else 0
    last = failed[-1]
    error = redact(last.error or "failed")
    repo.put(replace(request_set, updated_at=now, replacements=Replacements(
        before + len(failed), backoff.until, last.request.id, error, last.updated_at,
        rounds=backoff.failures)))
    for number, member in enumerate(failed, start=before + 1):
        repo.store.request_deletion(member.request.id, now=now)
        log.warning("request set %s: member %s failed (%s); deleting it and creating a "
                    "replacement (replacement %d; the next no sooner than %s)",
                    request_set.name, member.request.id, redact(member.error or "failed"),
                    number, rfc3339(backoff.until),
                    extra={"request_id": member.request.id, "provider": request_set.instance})
    return [m.request.id for m in failed]


def _from_record(record: RequestSetRecord) -> RequestSet:
    doc = record.document
    body = dict(doc["template"])
    body["machine_config"] = record.machine_config
    if record.join_url is not None:
        join = dict(doc.get("join_options") or {})
        join["api_url"] = record.join_url
        body["join"] = JoinSpec.model_validate(join, context=STORED)
    return RequestSet(
        name=record.name,
        template=MachineRequest.model_validate(body, context=STORED),
        machine_count=int(doc["machine_count"]),
        deleting=bool(doc.get("deleting", False)),
        fingerprint=str(doc["fingerprint"]),
        created_at=record.created_at,
        updated_at=record.updated_at,
        version=record.version,
        unreadable=record.unreadable,
        replacements=(Replacements.from_document(doc["replacements"])
                      if doc.get("replacements") else None),
    )

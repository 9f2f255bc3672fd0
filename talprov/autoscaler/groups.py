"""Node groups: the autoscaled machine sets of recorded clusters, and their changes.

A node group is a ``Workers`` set whose spec has an ``autoscaling`` block; its id
is ``<cluster>/<set>``. Every size change is a read-modify-write of the recorded
spec under the cluster's lease (the lease a scaler pass holds too), so two
concurrent calls, or a call and a scaler pass, cannot lose one another's change.
The scaler then creates or deletes machines as for ``talprov scale``; deletes
go through the store's mark-for-deletion, which the scaler's victim order
deletes first, so its quorum and disruption rules still apply.

Every method raises :class:`GroupError` with a gRPC status name for what the
caller got wrong or what cannot be done now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from talprov.autoscaler.providerids import MachineIds, matches, provider_id
from talprov.providers.errors import ProviderError
from talprov.providers.labels import LABEL_SET
from talprov.providers.types import Owner, Stage
from talprov.reconcile.failures import resource_error_kind
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import ClusterState, UnreadableCluster
from talprov.scaler.editing import ClusterBusy
from talprov.scaler.models import Autoscaling, MachineSetSpec
from talprov.secrets import redact
from talprov.store.records import RequestRecord

#: cloudprovider.InstanceErrorClass values (cluster-autoscaler cloud_provider.go).
OUT_OF_RESOURCES_CLASS = 1
OTHER_ERROR_CLASS = 99
#: Seconds NodeGroupForNode answers from the node index before rebuilding it.
NODE_INDEX_TTL = 5.0


class GroupError(Exception):
    """A call that cannot be carried out; ``code`` is a gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Group:
    id: str
    cluster: str
    set_name: str
    bounds: Autoscaling
    size: int

    @property
    def debug(self) -> str:
        return (f"talprov machine set {self.set_name} of cluster {self.cluster}: "
                f"size {self.size} ({self.bounds.min}..{self.bounds.max})")


@dataclass(frozen=True)
class InstanceView:
    """One machine of a group as the autoscaler sees it."""

    id: str
    state: str  # "creating", "running" or "deleting"
    error_class: int | None = None
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class NodeRef:
    provider_id: str
    name: str


@dataclass(frozen=True)
class _NodeIndex:
    built_at: float
    entries: list[tuple[Group, MachineIds]]


@dataclass
class _Sightings:
    """Zones of machines as last listed from their providers (``Refresh``)."""

    zones: dict[str, str] = field(default_factory=dict)


def split_group_id(group_id: str) -> tuple[str, str]:
    """``<cluster>/<set>`` as (cluster, set). Raises GroupError INVALID_ARGUMENT."""
    cluster, sep, set_name = group_id.partition("/")
    if not sep or not cluster or not set_name or "/" in set_name:
        raise GroupError("INVALID_ARGUMENT", f"node group id {group_id!r}: expected "
                                             "<cluster>/<set>")
    return cluster, set_name


class NodeGroups:
    """The externalgrpc calls on talprov's store. Thread-safe (gRPC runs calls
    on a pool); all state is in the store except the zone cache."""

    def __init__(self, scaler: Scaler, *, proxmox_regions: Mapping[str, str] | None = None,
                 lease_wait: float = 20.0, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        # Waiting for the lease is real time (other threads and processes hold it),
        # not the runtime's clock, which a test may have frozen.
        self.monotonic, self.sleep = monotonic, sleep
        self.scaler = scaler
        self.proxmox_regions = dict(proxmox_regions or {})
        self.lease_wait = lease_wait
        self._sightings = _Sightings()
        self._node_index: _NodeIndex | None = None
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------

    def groups(self) -> list[Group]:
        """Every autoscaled set of every recorded (not destroying) cluster whose
        record this store key can read (the run loop warns about the others)."""
        found: list[Group] = []
        for cluster in self.scaler.store.list_clusters():
            try:
                state = self.scaler.state(cluster)
            except UnreadableCluster:
                continue
            if state is None or state.destroying:
                continue
            for name, machine_set in state.spec.sets.items():
                if machine_set.autoscaling is not None:
                    found.append(Group(f"{cluster}/{name}", cluster, name,
                                       machine_set.autoscaling, machine_set.size))
        return found

    def group(self, group_id: str) -> tuple[ClusterState, MachineSetSpec, Autoscaling]:
        """The recorded state, set and bounds of a group. Raises GroupError NOT_FOUND."""
        cluster, set_name = split_group_id(group_id)
        state = self.scaler.state(cluster)
        machine_set = None if state is None else state.spec.sets.get(set_name)
        if state is None or machine_set is None or machine_set.autoscaling is None:
            raise GroupError("NOT_FOUND", f"no node group {group_id} (no autoscaled set "
                                          f"{set_name!r} in a recorded cluster {cluster!r})")
        if state.destroying:
            # Scaler.record would refuse it too; said here in the gRPC API's terms.
            raise GroupError("FAILED_PRECONDITION", f"cluster {cluster} is being destroyed")
        return state, machine_set, machine_set.autoscaling

    def members(self, group_id: str) -> list[RequestRecord]:
        cluster, set_name = split_group_id(group_id)
        return [r for r in self.scaler.records(cluster)
                if r.request.labels.get(LABEL_SET) == set_name]

    def ids_of(self, record: RequestRecord) -> MachineIds:
        handle = self.scaler.handles.get(record.request.provider)
        kind = handle.provider.type_name if handle is not None else ""
        zone = self._sightings.zones.get(f"{record.request.provider}/{record.infra_id}")
        return MachineIds(record.id, kind, record.request.provider, record.infra_id,
                          record.machine_uuid, zone)

    def instances(self, group_id: str) -> list[InstanceView]:
        """Each machine of the group: its providerID and its stage as the autoscaler's
        instance state; a failed machine carries an error class (out-of-resources for
        capacity and quota errors, so the autoscaler backs off to another group)."""
        self.group(group_id)
        self._see_zones(group_id, only_missing=True)
        views: list[InstanceView] = []
        for record in self.members(group_id):
            ident = provider_id(self.ids_of(record), self.proxmox_regions)
            if record.stage in (Stage.DEPROVISIONING, Stage.GONE) or record.marked_for_deletion:
                views.append(InstanceView(ident, "deleting"))
            elif record.stage == Stage.PROVISIONED:
                views.append(InstanceView(ident, "running"))
            elif record.stage == Stage.FAILED or resource_error_kind(record.error):
                kind = resource_error_kind(record.error)
                views.append(InstanceView(
                    ident, "creating",
                    OUT_OF_RESOURCES_CLASS if kind else OTHER_ERROR_CLASS,
                    (kind or "failed").upper().replace(" ", "_"),
                    redact(record.error or "provisioning failed")))
            else:
                views.append(InstanceView(ident, "creating"))
        return views

    def group_for_node(self, node: NodeRef) -> Group | None:
        """The group whose machine the node is (by providerID, else by node name =
        the machine's hostname = its request id), or None.

        Answered from an index of every group's machines, rebuilt by :meth:`refresh`
        and when older than ``NODE_INDEX_TTL`` seconds: the autoscaler asks once
        per node after each Refresh, and reading every cluster for each would cost
        a store round and a spec decryption per node.
        """
        index = self._node_index
        if index is None or self.monotonic() - index.built_at > NODE_INDEX_TTL:
            index = self._build_node_index()
        for group, ids in index.entries:
            if matches(node.provider_id, ids, self.proxmox_regions):
                return group
            if node.name and node.name == ids.request_id:
                return group
        return None

    def _build_node_index(self) -> _NodeIndex:
        built_at = self.monotonic()
        entries = [(group, self.ids_of(record)) for group in self.groups()
                   for record in self.members(group.id)]
        index = _NodeIndex(built_at, entries)
        self._node_index = index
        return index

    def refresh(self) -> None:
        """Relist the machines of every group's providers (the zones of AWS machines)
        and rebuild the node index. Provider errors are left for the next refresh:
        a stale zone only delays a providerID."""
        for group in self.groups():
            self._see_zones(group.id, only_missing=False)
        self._build_node_index()

    def _see_zones(self, group_id: str, *, only_missing: bool) -> None:
        instances = {r.request.provider for r in self.members(group_id)
                     if r.infra_id and (not only_missing or self.ids_of(r).zone is None)}
        for instance in sorted(instances):
            handle = self.scaler.handles.get(instance)
            if handle is None or handle.provider.type_name != "aws":
                continue
            try:
                machines = handle.provider.list_machines(
                    Owner(self.scaler.runtime.installation, instance))
            except ProviderError:
                continue
            with self._lock:
                for machine in machines:
                    zone = machine.extra.get("availability_zone")
                    if zone:
                        self._sightings.zones[f"{instance}/{machine.infra_id}"] = zone

    # -- changing ------------------------------------------------------------

    @contextmanager
    def _cluster_lease(self, cluster: str) -> Iterator[None]:
        """Hold the cluster's lease (waiting up to ``lease_wait`` seconds for a scaler
        pass or another change). Raises GroupError UNAVAILABLE when it stays taken."""
        try:
            with self.scaler.editing(cluster, wait=self.lease_wait, clock=self.monotonic,
                                     sleep=self.sleep):
                yield
        except ClusterBusy:
            raise GroupError("UNAVAILABLE", f"cluster {cluster} is busy (its lease is "
                                            "held); try again") from None

    def _resize(self, group_id: str, change: int, *, check: str) -> int:
        cluster, set_name = split_group_id(group_id)
        with self._cluster_lease(cluster):
            state, machine_set, bounds = self.group(group_id)
            size = machine_set.size + change
            if size > bounds.max:
                raise GroupError("OUT_OF_RANGE", f"node group {group_id}: size {size} would "
                                                 f"exceed its max ({bounds.max})")
            if size < bounds.min:
                raise GroupError("OUT_OF_RANGE", f"node group {group_id}: size {size} would "
                                                 f"go below its min ({bounds.min})")
            if check == "decrease":
                self._check_unprovisioned(group_id, size)
            self.scaler.record(state.spec.scaled(set_name, size), keep_autoscaled_sizes=False)
            return size

    def target_size(self, group_id: str) -> int:
        """The recorded size of the group. Raises GroupError."""
        return self.group(group_id)[1].size

    def increase(self, group_id: str, delta: int) -> int:
        """Raise the recorded size by ``delta`` (> 0); the new size. Refused beyond max.
        Not idempotent: each call adds ``delta``."""
        if delta <= 0:
            raise GroupError("INVALID_ARGUMENT", f"delta must be positive, got {delta}")
        return self._resize(group_id, delta, check="increase")

    def decrease_target(self, group_id: str, delta: int) -> int:
        """Lower the recorded size by ``-delta`` (delta < 0) without deleting any
        provisioned machine: only requests not yet fulfilled go. Refused when the new
        size would be below the provisioned count or min."""
        if delta >= 0:
            raise GroupError("INVALID_ARGUMENT", f"delta must be negative, got {delta}")
        return self._resize(group_id, delta, check="decrease")

    def _check_unprovisioned(self, group_id: str, size: int) -> None:
        provisioned = sum(1 for r in self.members(group_id) if r.stage == Stage.PROVISIONED)
        if size < provisioned:
            raise GroupError("FAILED_PRECONDITION",
                             f"node group {group_id}: size {size} is below its {provisioned} "
                             "provisioned machines; delete nodes by name instead")

    def delete_nodes(self, group_id: str, nodes: Sequence[NodeRef]) -> int:
        """Delete exactly these nodes' machines and lower the size by as many; never
        below min. Every node must belong to the group (else nothing changes).
        Idempotent for machines already being deleted (they do not count twice)."""
        cluster, set_name = split_group_id(group_id)
        with self._cluster_lease(cluster):
            state, machine_set, bounds = self.group(group_id)
            members = self.members(group_id)
            victims: dict[str, RequestRecord] = {}
            for node in nodes:
                record = next((r for r in members
                               if matches(node.provider_id, self.ids_of(r), self.proxmox_regions)
                               or (node.name and node.name == r.id)), None)
                if record is None:
                    raise GroupError("NOT_FOUND", f"node {node.name or node.provider_id} is "
                                                  f"not in node group {group_id}")
                victims[record.id] = record
            new = [r for r in victims.values()
                   if r.stage not in (Stage.DEPROVISIONING, Stage.GONE)]
            size = machine_set.size - len(new)
            if size < bounds.min:
                raise GroupError("OUT_OF_RANGE", f"node group {group_id}: deleting {len(new)} "
                                                 f"would go below its min ({bounds.min})")
            for record in new:
                self.scaler.store.mark_for_deletion(record.id)
            self.scaler.record(state.spec.scaled(set_name, size), keep_autoscaled_sizes=False)
            return size

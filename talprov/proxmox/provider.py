"""The Proxmox VE provider: one VM per request, booted from the Talos nocloud ISO.

Steps (each idempotent; see docs/architecture.md): ``place`` → ``ensure-iso`` →
``ensure-seed`` → ``ensure-vm`` → ``start-vm`` → ``wait-running``. Every VM
carries talprov's ownership marks as PVE tags, so one ``/cluster/resources``
call finds all of them on whichever node they run now (after a migration too),
and a VM created just before a crash is found and adopted instead of created
again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from talprov.providers.batching import side_by_side
from talprov.providers.errors import InvalidRequest, ProviderError, Transient
from talprov.providers.labels import SetGroup, set_group
from talprov.providers.ownership import REQUEST_KEY, ownership_tags
from talprov.providers.protocol import (
    Runtime,
    Step,
    StepContext,
    endpoint_without_secrets,
)
from talprov.providers.types import (
    Arch,
    Health,
    Machine,
    MachineRequest,
    Owner,
    Retry,
    StepResult,
)
from talprov.proxmox import images, vm
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.deprovision import Deprovisioner
from talprov.proxmox.errors import TaskFailed, VmidTaken
from talprov.proxmox.isos import IsoListings, IsoSteps
from talprov.proxmox.placement import (
    choose_node,
    choose_storage,
    given_node,
    nodes_from_resources,
    set_members_per_node,
)
from talprov.proxmox.power import PowerSteps, adopt, recorded_vm, task_poll
from talprov.proxmox.second_vms import SecondVms
from talprov.proxmox.state import ProxmoxState
from talprov.proxmox.tags import (
    UUID_KEY,
    decode_tags,
    encode_tags,
    notes,
    owned_by,
    request_mark_values,
)
from talprov.proxmox.vm import create_params, machine_from_resource
from talprov.proxmox.vmids import OnceValue, VmidBook
from talprov.talos.assets import Platform, require_offered
from talprov.talos.factory import images_for
from talprov.talos.join import check_user_data

log = logging.getLogger(__name__)

Ctx = StepContext[ProxmoxMachineData, ProxmoxState]
#: VMID collisions tolerated within one ensure-vm run before backing off.
MAX_VMID_ATTEMPTS = 5


class ProxmoxProvider:
    """Creates and removes Talos VMs on one Proxmox VE cluster."""

    type_name: ClassVar[str] = "proxmox"
    config_model: ClassVar[type[ProxmoxConfig]] = ProxmoxConfig
    data_model: ClassVar[type[ProxmoxMachineData]] = ProxmoxMachineData
    state_model: ClassVar[type[ProxmoxState]] = ProxmoxState

    def __init__(
        self,
        name: str,
        config: ProxmoxConfig,
        runtime: Runtime,
        *,
        iso_url: images.IsoUrlResolver | None = None,
        client: PveClient | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.client = client or PveClient(config, clock=runtime.clock)
        resolve = iso_url or (lambda request: images.factory_iso_url(images_for(runtime), request))
        self._isos = IsoSteps(self.client, config, runtime, resolve)
        self._vmids = VmidBook(runtime.clock, config.task_timeout)
        self._deprovisioner = Deprovisioner(self.client, config, self._request_vms, self._vmids)
        self._power = PowerSteps(self.client, config, self._vm_resources, self._request_vms)
        self._second_vms = SecondVms(self.client, self._vm_resources, runtime.clock,
                                     runtime.sleep)

    def __repr__(self) -> str:
        return f"ProxmoxProvider({self.name!r}, {self.client.base_url})"

    def use_concurrency(self, calls: int) -> None:
        """Size the API session's connection pool for ``calls`` steps at once, plus
        the task polls and listing that run beside them (``SharesConnections``)."""
        self.client.use_connections(calls + 2)

    # -- listing ------------------------------------------------------------

    def _vm_resources(self) -> list[Mapping[str, Any]]:
        """One ``/cluster/resources?type=vm`` (every node's VMs, with tags and lock)."""
        result: list[Mapping[str, Any]] = self.client.get(
            "list VMs", "cluster/resources", type="vm"
        )
        return result

    def _request_vms(
        self, owner: Owner, request_id: str, resources: Sequence[Mapping[str, Any]] | None = None
    ) -> list[Mapping[str, Any]]:
        """The VMs (resource entries) carrying this request's marks, lowest VMID first."""
        items = self._vm_resources() if resources is None else resources
        wanted = request_mark_values(request_id)  # the id; an older VM's digest
        found = []
        for item in items:
            if item.get("type") != "qemu":
                continue
            marks = decode_tags(item.get("tags"))
            if owned_by(marks, owner) and marks.get(REQUEST_KEY) in wanted:
                found.append(item)
        return sorted(found, key=lambda i: int(i["vmid"]))

    def list_machines(self, owner: Owner) -> list[Machine]:
        """Every VM ``owner`` owns, from one ``/cluster/resources?type=vm`` call.

        Read-only and idempotent. Raises ``AuthError`` or ``Transient``.
        """
        machines = []
        for item in self._vm_resources():
            marks = decode_tags(item.get("tags"))
            if item.get("type") == "qemu" and owned_by(marks, owner):
                machines.append(machine_from_resource(item, marks))
        return machines

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Stop hard and delete (with its disks) a second VM of a request, which the
        reconciler found listed beside ``kept``, the VM the request records
        (``RemovesSecondMachines``; ``talprov.proxmox.second_vms``). Refuses (None)
        unless both VMs are listed (one read), carry ``owner``'s and the request's
        tags and are no templates, and the second is not locked; None too when it
        is gone. Idempotent. Raises ``AuthError``, ``Transient`` or ``TaskFailed``.
        """
        return self._second_vms.remove(owner, machine, kept)

    def check_request(self, request: MachineRequest) -> None:
        """Pre-flight (no API call): the machine config renders as user-data, the VM
        can run the request's arch and the factory has its nocloud image.

        Raises ``InvalidRequest`` (field ``machine_config``, ``arch`` or
        ``secure_boot``). Idempotent.
        """
        check_user_data(request)
        if request.arch is not Arch.AMD64:
            # ProxmoxMachineData.machine allows only q35 and pc: x86_64 machine types.
            raise InvalidRequest(f"Proxmox VMs are x86_64 machines (machine q35 or pc); "
                                 f"{request.arch} cannot boot on them", field="arch")
        require_offered(Platform.NOCLOUD, request)

    def endpoint(self) -> str:
        """The PVE API URL, without credentials."""
        return endpoint_without_secrets(self.config.url)

    def health(self) -> Health:
        """Whether PVE answers with these credentials. Never raises."""
        try:
            version = self.client.get("read PVE version", "version")
        except ProviderError as exc:
            return Health(ok=False, message=str(exc))
        return Health(ok=True, message=f"Proxmox VE {version.get('version', '?')}")

    # -- steps --------------------------------------------------------------

    def steps(self) -> Sequence[Step]:
        """The provisioning steps, in order. Each is idempotent."""
        return [
            # These read no listing (place reads the cluster itself) and make no
            # VM: they run while the pass's listing is on its way.
            Step.batched("place", self._place_batch, needs_listing=False),
            Step.batched("ensure-iso", self._isos.ensure_iso_batch, needs_listing=False),
            Step.batched("ensure-seed", self._ensure_seed_batch, needs_listing=False),
            Step.batched("ensure-vm", self._ensure_vm_batch, creates_machine=True),
            Step.batched("start-vm", self._power.start_vm_batch),
            Step.batched("wait-running", self._power.wait_running_batch,
                         timeout=self.config.running_timeout),
        ]

    # Every request of a batch is handled side by side; what they all need (the
    # VM listing, ISO listings, the next free VMID) is read once per batch, on
    # first use, so after the steps before it in the same batch.

    def _listing(self) -> OnceValue[list[Mapping[str, Any]]]:
        return OnceValue(self._vm_resources)

    def _ensure_seed_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        listings = IsoListings(self._isos.iso_names)
        return side_by_side(lambda ctx: self._ensure_seed(ctx, listings), ctxs)

    def _ensure_vm_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        listing = self._listing()
        first_free = OnceValue(lambda: int(self.client.get("get next VMID", "cluster/nextid")))
        outcomes = side_by_side(lambda ctx: self._ensure_vm(ctx, listing, first_free), ctxs)
        # Creates that ended within the batch kept their ids reserved, because
        # the batch's listing predates their VMs; the next batch lists them.
        for ctx in ctxs:
            if ctx.state.create_task is None:
                self._vmids.release(ctx.state.vmid)
        return outcomes

    def _identify(self, ctx: Ctx) -> None:
        if ctx.state.machine_uuid is None:
            ctx.state.machine_uuid = vm.machine_uuid(
                ctx.owner.installation, ctx.owner.instance, ctx.request.id
            )

    def _place_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """Choose node and storage for every request of the pass with one cluster read.

        Requests placed in the same pass count towards each other, so a new machine
        set spreads over the nodes instead of landing on the emptiest one together.
        """
        outcomes: list[StepResult | BaseException] = [None] * len(ctxs)
        todo = [i for i, c in enumerate(ctxs) if not (c.state.node and c.state.storage)]
        if not todo:
            return outcomes
        resources = self.client.get("read cluster resources", "cluster/resources")
        nodes = nodes_from_resources(resources)
        placed: Counter[tuple[SetGroup, str]] = Counter()
        listings: dict[str, list[Mapping[str, Any]]] = {}
        for index in todo:
            ctx = ctxs[index]
            try:
                self._place(ctx, resources, nodes, placed, listings)
            except ProviderError as exc:
                outcomes[index] = exc
        return outcomes

    def _place(
        self, ctx: Ctx, resources: Sequence[Mapping[str, Any]], nodes: Any,
        placed: Counter[tuple[SetGroup, str]], listings: dict[str, list[Mapping[str, Any]]],
    ) -> None:
        self._identify(ctx)
        data = ctx.data
        existing = self._request_vms(ctx.owner, ctx.request.id, resources)
        group = set_group(ctx.request.labels)
        if existing:
            adopt(ctx, existing[0])
            node = str(existing[0]["node"])
        elif data.node is not None:
            node = given_node(nodes, data.node)
        else:
            counts = set_members_per_node(resources, group)
            for (placed_group, placed_node), n in placed.items():
                if placed_group == group:
                    counts[placed_node] += n
            allowed = data.allowed_nodes or self.config.allowed_nodes
            node = choose_node(nodes, allowed, counts)
        placed[(group, node)] += 1
        storage = data.storage
        if storage is None:
            if node not in listings:
                listings[node] = self.client.get(
                    f"list storages of node {node}", f"nodes/{node}/storage",
                    content="images", enabled=1,
                )
            storage = choose_storage(listings[node], self.config.allowed_storages)
        ctx.state.node = node
        ctx.state.storage = storage
        ctx.state.iso_storage = data.iso_storage or self.config.iso_storage
        ctx.event(f"placed on node {node}, system disk on storage {storage}")

    def _ensure_seed(self, ctx: Ctx, listings: IsoListings) -> StepResult:
        """Upload the machine's NoCloud seed ISO unless it is already there."""
        if ctx.state.seed_volume is not None:
            return None
        assert ctx.state.node is not None
        assert ctx.state.iso_storage is not None
        assert ctx.state.machine_uuid is not None
        uuid_text = ctx.state.machine_uuid
        name = images.seed_iso_name(uuid_text)
        mac = vm.mac_address(uuid_text)
        image = images.build_seed_iso(
            images.render_user_data(ctx.request),
            images.meta_data(ctx.request, uuid_text),
            images.network_config(ctx.data.static_network, mac),
        )
        volume = self._isos.ensure_file(ctx.state.node, ctx.state.iso_storage, name, image,
                                        listings)
        ctx.state.seed_volume = volume
        ctx.event(f"cloud-init seed ISO {volume} in place")
        return None

    def _tags(self, ctx: Ctx) -> tuple[list[str], str]:
        assert ctx.state.machine_uuid
        marks = ownership_tags(ctx.owner, ctx.request)
        marks[UUID_KEY] = ctx.state.machine_uuid
        tags = encode_tags(marks) + list(ctx.data.tags)
        return sorted(set(tags)), notes(marks, ctx.request.labels)

    def _ensure_vm(
        self, ctx: Ctx, listing: OnceValue[list[Mapping[str, Any]]], first_free: OnceValue[int]
    ) -> StepResult:
        """Find the request's VM by its tags, or create it with a fresh VMID.

        A VMID taken by another creator between ``/cluster/nextid`` and the create
        is retried with the next id. Idempotent: a VM that exists (also one made
        before a crash that lost the state) is adopted, never made twice.
        """
        state = ctx.state
        if state.create_task is not None:
            return self._created(ctx, state.create_task)
        resources = listing()
        existing = self._request_vms(ctx.owner, ctx.request.id, resources)
        if existing:
            self._vmids.release_request(ctx.request.id)
            # The VM the state records, when listed, before a second one of lower VMID.
            adopt(ctx, recorded_vm(existing, state.vmid) or existing[0])
            return None
        # A VM still being created carries no tags yet: if one is in flight on
        # this cluster it may be ours from before a crash, so wait for it. Creates
        # this process started for other requests cannot be.
        in_flight = any(
            i.get("lock") == "create" and not i.get("tags")
            and not self._vmids.creating_for_other(int(i["vmid"]), ctx.request.id)
            for i in resources)
        if in_flight and ctx.elapsed() < self.config.task_timeout:
            return Retry(self.config.poll_interval, "another VM create is in flight")
        return self._create_vm(ctx, {int(i["vmid"]) for i in resources}, first_free)

    def _create_vm(self, ctx: Ctx, listed: set[int], first_free: OnceValue[int]) -> StepResult:
        state = ctx.state
        assert state.node is not None
        assert state.storage is not None
        assert state.iso_volume is not None
        assert state.seed_volume is not None
        assert state.machine_uuid is not None
        tags, description = self._tags(ctx)
        next_free = first_free
        for _attempt in range(MAX_VMID_ATTEMPTS):
            vmid = self._vmids.reserve(ctx.request.id, next_free, listed)
            try:
                params = create_params(
                    vmid=vmid, request=ctx.request, data=ctx.data, storage=state.storage,
                    iso_volume=state.iso_volume, seed_volume=state.seed_volume,
                    machine_uuid=state.machine_uuid, mac=vm.mac_address(state.machine_uuid),
                    tags=tags, description=description,
                )
                upid = self.client.post(f"create VM {vmid} on {state.node}",
                                        f"nodes/{state.node}/qemu", **params)
            except VmidTaken:
                self._vmids.release(vmid)
                ctx.event(f"VMID {vmid} was taken by another creator; trying the next one")
                # Someone else creates here too: ask PVE again instead of counting up.
                next_free = OnceValue(
                    lambda: int(self.client.get("get next VMID", "cluster/nextid")))
                continue
            except BaseException:
                self._vmids.release(vmid)
                raise
            state.vmid = vmid
            state.create_task = str(upid)
            ctx.event(f"creating VM {vmid} on node {state.node}")
            # Looked at at once: a create that ended already goes on to the next
            # step in the same pass.
            return self._created(ctx, state.create_task, keep_reserved=True)
        raise Transient("no free VMID after several attempts", retry_after=5.0)

    def _created(self, ctx: Ctx, task: str, *, keep_reserved: bool = False) -> StepResult:
        """Done once the create task ended well (the VM is ``state.vmid``); a Retry while
        it runs or when its VMID was taken (the retry picks another). Raises the
        task's failure otherwise. ``keep_reserved``: a create that ended well keeps
        its id in the book (the batch releases it)."""
        state = ctx.state
        assert state.node
        try:
            if not self.client.task_done(state.node, task, f"create VM {state.vmid}"):
                if state.vmid is not None:  # still ours: keep (or, after a restart, put back)
                    self._vmids.hold(state.vmid, ctx.request.id)
                return Retry(task_poll(ctx, self.config.poll_interval), "VM create task running")
        except VmidTaken:
            self._vmids.release(state.vmid)
            state.create_task = None
            state.vmid = None
            return Retry(0, "VMID taken by another creator; picking another")
        except TaskFailed:
            self._vmids.release(state.vmid)
            state.create_task = None
            raise
        # (A status that could not be read leaves the task to be looked at again.)
        # Our create ended well: the VM is state.vmid on state.node.
        if not keep_reserved:
            self._vmids.release(state.vmid)
        state.create_task = None
        state.infra_id = str(state.vmid)
        return None

    # -- deprovision ----------------------------------------------------------

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Stop (hard after ``shutdown_timeout``) and purge the request's VMs and seed ISO.

        Idempotent: a VM that is already gone is success. Finds VMs by tag on any
        node, so a migrated VM is removed too. Raises ``ProviderError`` subclasses.
        """
        return self._deprovisioner.run(cast(Ctx, ctx))


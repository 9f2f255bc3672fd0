"""The vSphere provider: one VM per request, cloned from the Talos template.

Steps (each idempotent; see docs/architecture.md): ``ensure-template`` → ``clone-vm`` →
``configure-vm`` → ``tag-vm`` → ``power-on`` → ``wait-running``. The template is a
named one, one deployed from a content library item (``library``), or the
imported factory OVA (``images``); tags go through the vAPI REST session
(``vapi``, ``tagging``). Every VM carries talprov's
ownership marks in its extraConfig and an instance UUID derived from the request
id, so one property-collector retrieval finds all of them and a VM cloned just
before a crash is found again instead of cloned twice. Long vCenter tasks are
never waited for in a step: a task is looked at once right after it is started
(one that has ended lets the request go on in the same pass); otherwise its id
is stored in the state and polled on later passes. ``power-on`` and
``wait-running`` are :mod:`talprov.vmware.power`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel

from talprov.providers import MachineRequest, endpoint_without_secrets
from talprov.providers.batching import one_by_one, steps_side_by_side
from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.ownership import INSTANCE_KEY, is_owned
from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import Health, Machine, Owner, Retry, StepResult
from talprov.talos.assets import Platform, require_offered
from talprov.talos.join import UserDataCache, check_user_data, refuse_fixed_image
from talprov.vmware import machines, sdk
from talprov.vmware.client import FIRST_TASK_POLL, ServiceInstance, VSphereClient, ssl_context
from talprov.vmware.clones import name_taken
from talprov.vmware.config import VSphereConfig
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.deprovision import Deprovisioner
from talprov.vmware.errors import TaskFailed, is_fault
from talprov.vmware.images import ImportBusy, TemplateImporter
from talprov.vmware.inventory import Inventory, uses_template_devices
from talprov.vmware.library import LibraryTemplates
from talprov.vmware.power import PowerSteps
from talprov.vmware.reads import ConfigureReads, VmRead
from talprov.vmware.sdk import vm_ref
from talprov.vmware.second_vms import SecondVms
from talprov.vmware.state import VSphereState
from talprov.vmware.tagging import Tagger
from talprov.vmware.vapi import VapiClient

log = logging.getLogger(__name__)

Ctx = StepContext[VSphereMachineData, VSphereState]
T = TypeVar("T")


def _listing_tells(ctx: Ctx) -> bool:
    """Whether the pass's listing says if the request's VM exists, so clone-vm needs
    no lookup of its own (one round trip before the first clone of a pass).

    Only at the step's first attempt (``instance_uuid`` is stored by every
    attempt): the listing knows a VM by the ownership marks in its extraConfig,
    which the clone sets, and is asked after any worker that held the request
    died or let go of it. Later attempts look the VM up by its instance UUID, as
    after a clone refused with ``DuplicateName`` (its VM not listed yet).
    """
    return ctx.listed and ctx.state.instance_uuid is None


class VSphereProvider:
    """Creates and removes Talos VMs in one vCenter datacenter."""

    type_name: ClassVar[str] = "vmware"
    # Typed as the Provider protocol declares them (ClassVars are invariant).
    config_model: ClassVar[type[BaseModel]] = VSphereConfig
    data_model: ClassVar[type[BaseModel]] = VSphereMachineData
    state_model: ClassVar[type[ProviderState]] = VSphereState

    def __init__(self, name: str, config: VSphereConfig, runtime: Runtime,
                 *, client: VSphereClient | None = None,
                 vapi: VapiClient | None = None) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.client = client or VSphereClient(config, sleep=runtime.sleep)
        # The REST session trusts exactly what the SOAP session trusts; its own
        # context object, because httpcore sets ALPN on the context it is given.
        self.vapi = vapi or VapiClient(config, ssl_context(config), clock=runtime.clock)
        self.inventory = Inventory(self.client, config.datacenter, clock=runtime.clock,
                                   instance=name, template_folder=config.template_folder)
        self.importer = TemplateImporter(self.client, config, runtime, self.inventory)
        self.library = LibraryTemplates(self.client, self.vapi, config, runtime, self.inventory)
        self.tagger = Tagger(self.vapi)
        self._deprovisioner = Deprovisioner(self.client, config, self.find_vm)
        # clone-vm and configure-vm both need the rendered config: rendered once.
        self._user_data = UserDataCache()
        self._configure_reads = ConfigureReads(self.client, runtime.clock)
        self.power = PowerSteps(self.client)
        self.second_vms = SecondVms(self.client, runtime.clock, runtime.sleep)

    def __repr__(self) -> str:
        return f"VSphereProvider({self.name!r}, {self.client.host})"

    # -- listing ------------------------------------------------------------

    def list_machines(self, owner: Owner) -> list[Machine]:
        """Every VM ``owner`` owns, from one property-collector retrieval of all VMs.

        Read-only and idempotent. Raises ``AuthError`` or ``Transient``.
        """
        vim = sdk.vim()

        found = []
        listed = self.client.retrieve("list VMs", vim.VirtualMachine, machines.LIST_PATHS)
        for vm, props in listed:
            marks = machines.marks_of(props)
            if INSTANCE_KEY in marks and is_owned(marks, owner) and not props.get(
                    "config.template"):
                found.append(machines.machine_from_props(str(vm._moId), props))
        return found

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Power off hard and destroy a second VM of a request, which the reconciler
        found listed beside ``kept``, the VM the request records
        (``RemovesSecondMachines``; ``talprov.vmware.second_vms``). Refuses (None)
        unless both VMs exist (one read), are ``owner``'s, are marked with
        ``machine.request_id`` and are no templates; None too when it is gone.
        Idempotent. Raises ``AuthError``, ``Transient`` or ``StepTimeout``.
        """
        return self.second_vms.remove(owner, machine, kept)

    def close(self) -> None:
        """Log out of both vCenter sessions (best effort). Idempotent."""
        self.vapi.close()
        self.client.close()

    def check_request(self, request: MachineRequest) -> None:
        """Pre-flight (no API call): the machine config renders as user-data, and,
        unless the VM is cloned from a template of the user's, the factory has a
        vmware image for the request's arch, version and secure boot.

        Raises ``InvalidRequest`` (field ``machine_config``, ``arch`` or
        ``secure_boot``). Idempotent.
        """
        check_user_data(request)
        data = request.provider_data
        if not (data.get("template") or data.get("library_item")):
            require_offered(Platform.VMWARE, request)

    def endpoint(self) -> str:
        """The vCenter SDK URL, without credentials."""
        return endpoint_without_secrets(self.config.url)

    def health(self) -> Health:
        """Whether vCenter answers with these credentials. Never raises."""
        try:
            about = self.client.call("read vCenter version",
                                     lambda si: str(si.content.about.fullName))
        except Exception as exc:
            return Health(ok=False, message=str(exc))
        return Health(ok=True, message=about)

    def _with_inventory(self, what: str, fn: Callable[[ServiceInstance], T]) -> T:
        """``client.call`` for calls that use looked-up objects: a ``NotFound``
        makes the inventory look everything up again on the retry."""
        try:
            return self.client.call(what, fn)
        except NotFound:
            self.inventory.forget()
            raise

    def _task_poll(self, ctx: Ctx) -> float:
        """When to look at a running task again: soon at first, then less often."""
        return self.client.next_task_look(ctx.elapsed())

    def find_vm(self, owner: Owner, request_id: str) -> str | None:
        """The moid of the request's VM (found by its instance UUID), or None."""
        instance = machines.instance_uuid(owner, request_id)

        def run(si: ServiceInstance) -> str | None:
            dc = self.inventory.datacenter(si)
            vm = si.content.searchIndex.FindByUuid(dc, instance, True, True)
            return str(vm._moId) if vm is not None else None

        return self.client.read(f"find VM of {request_id}", run)

    def find_vms(self, owner: Owner, request_ids: Sequence[str]) -> dict[str, str | None]:
        """The moid of each request's VM (None: there is none), found by instance UUID
        in one retrieval of every VM of the datacenter, however many requests.

        Read-only. Raises ``AuthError`` or ``Transient``.
        """
        vim = sdk.vim()

        wanted = {machines.instance_uuid(owner, rid): rid for rid in request_ids}
        found: dict[str, str | None] = dict.fromkeys(request_ids)
        dc = self.client.read("find the datacenter", self.inventory.datacenter)
        for vm, props in self.client.retrieve("find VMs by instance UUID", vim.VirtualMachine,
                                              ["config.instanceUuid"], root=dc):
            rid = wanted.get(str(props.get("config.instanceUuid")))
            if rid is not None:
                found[rid] = str(vm._moId)
        return found

    # -- steps --------------------------------------------------------------

    def steps(self) -> Sequence[Step]:
        """The provisioning steps, in order. Each is idempotent."""
        # Every step takes the requests that reached it together and runs them side
        # by side (vCenter has no call for many clones); the runner then stores
        # the whole group's progress in one transaction instead of one each.
        # The tasks of a batch end one after another (vCenter copies one template
        # for one clone after the other): the steps with tasks are pipelined, so a
        # VM whose clone ended is configured and powered on while the others clone.
        return [
            # Reads no listing and makes no machine (a template is none): it runs
            # while the pass's listing is on its way. found_again: a template it
            # found, deployed or imported is looked up by its name first, so its
            # outcome is stored with clone-vm's (one transaction less before the
            # first clone of a pass).
            Step.batched("ensure-template", one_by_one(self._ensure_template),
                         timeout=self.config.task_timeout, needs_listing=False,
                         found_again=True),
            Step.batched("clone-vm", self._clone_batch, timeout=self.config.task_timeout,
                         pipelined=True, creates_machine=True),
            Step.batched("configure-vm", self._configure_batch, pipelined=True),
            Step.batched("tag-vm", one_by_one(self._tag_vm)),
            Step.batched("power-on", one_by_one(self.power.power_on), pipelined=True),
            Step.batched("wait-running", one_by_one(self.power.wait_running),
                         timeout=self.config.running_timeout),
        ]

    def _ensure_template(self, ctx: Ctx) -> StepResult:
        """Find the named template, or find/deploy the library item's, or find/import the
        factory OVA's; then look up where its clone goes (``Inventory.look_ahead``).
        Idempotent."""
        outcome = self._find_template(ctx)
        if outcome is None and ctx.state.template_moid is not None:
            self.inventory.look_ahead(ctx.data, ctx.state.template_moid)
        return outcome

    def _find_template(self, ctx: Ctx) -> StepResult:
        state = ctx.state
        if state.template_moid is not None:
            return None
        refuse_fixed_image(ctx.request, "provider_data.content_library", ctx.data.content_library)
        refuse_fixed_image(ctx.request, "provider_data.template", ctx.data.template)
        if ctx.data.tags:
            # Fail on a misspelt tag before anything is deployed or cloned (cached
            # for the tag-vm step).
            self.tagger.resolve(ctx.data.tags)
        if ctx.data.content_library:
            try:
                name, moid = self.library.ensure(ctx.data)
            except ImportBusy as exc:
                return Retry(self.config.poll_interval, str(exc))
            state.template, state.template_moid = name, moid
            ctx.event(f"template {name} ({moid}) from the content library ready")
            return None
        if ctx.data.template:
            path = ctx.data.template

            def run(si: ServiceInstance) -> str:
                return str(self.inventory.template(si, path)._moId)

            state.template, state.template_moid = path, self._with_inventory(
                f"find template {path}", run)
            return None
        try:
            name, moid = self.importer.ensure(ctx.request, ctx.data)
        except ImportBusy as exc:
            return Retry(self.config.poll_interval, str(exc))
        state.template, state.template_moid = name, moid
        ctx.event(f"template {name} ({moid}) ready")
        return None

    def _clone_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """clone-vm for a batch: whether the VMs to clone exist already is known from
        the pass's listing, else one read for the batch."""
        fresh = [c for c in ctxs if c.state.vm_moid is None and c.state.clone_task is None]
        looked_up = {c.request.id: c.observed.infra_id if c.observed else None
                     for c in fresh if _listing_tells(c)}
        unknown = [c.request.id for c in fresh if c.request.id not in looked_up]
        if len(unknown) > 1:
            try:
                looked_up.update(self.find_vms(ctxs[0].owner, unknown))
            except ProviderError as exc:
                return [exc] * len(ctxs)
        return steps_side_by_side(lambda ctx: self._clone_vm(ctx, looked_up), ctxs)

    def _clone_vm(self, ctx: Ctx, looked_up: Mapping[str, str | None]) -> StepResult:
        """Clone the template into the request's VM unless it exists (found by instance
        UUID, in ``looked_up`` when the batch looked it up already).

        The clone task's id is stored, so later passes wait for it. Idempotent.
        """
        state = ctx.state
        if state.vm_moid is not None:
            return None
        state.instance_uuid = machines.instance_uuid(ctx.owner, ctx.request.id)
        if state.clone_task is not None:
            found = self._cloned(ctx, state.clone_task)
            if found is not False:  # done, or still running
                return None if found is True else found
        rid = ctx.request.id
        existing = looked_up[rid] if rid in looked_up else self.find_vm(ctx.owner, rid)
        if existing is not None:
            state.vm_moid = state.infra_id = existing
            ctx.event(f"VM {existing} of this request exists already; adopted")
            return None
        user_data = self._user_data(ctx.request)
        extra = machines.extra_config(ctx.owner, ctx.request, user_data)
        template_moid = state.template_moid
        assert template_moid is not None

        def clone(si: ServiceInstance) -> str | None:
            template = vm_ref(si, template_moid)
            place = self.inventory.placement(si, ctx.data)
            devices = (self.inventory.template_devices(template)
                       if uses_template_devices(ctx.data, place.networks) else [])
            spec = machines.clone_spec(template, devices, ctx.data, place, extra,
                                       state.instance_uuid or "")
            try:
                return str(template.CloneVM_Task(place.folder, ctx.request.id, spec)._moId)
            except Exception as exc:
                if is_fault(exc, "DuplicateName"):
                    return None
                raise

        task = self._with_inventory(f"clone VM {ctx.request.id}", clone)
        if task is None:
            return name_taken(self.client, self.inventory, ctx, self._task_poll(ctx))
        state.clone_task = task
        ctx.event(f"cloning VM {ctx.request.id} from {state.template}")
        found = self._cloned(ctx, state.clone_task)
        if found is False:
            return Retry(FIRST_TASK_POLL, "clone ended; looking its VM up")
        return None if found is True else found

    def _cloned(self, ctx: Ctx, task: str) -> Retry | bool:
        """Look at the clone task: True when done (the VM recorded), a Retry while it
        runs, False when the VM must be found by its UUID (vCenter forgot the task).

        Called right after the clone starts too: a clone that ended within the
        call (vcsim; a fast linked clone) goes on to configure-vm in the same pass.
        """
        state = ctx.state
        try:
            # Reads, in the same round trip, what configure-vm compares of the VM.
            result = self._configure_reads.clone_done(task, f"clone VM {ctx.request.id}")
        except NotFound:
            result = True  # vCenter forgot the task; look the VM up
        except TaskFailed as exc:
            state.clone_task = None
            if exc.fault == "DuplicateName":
                return name_taken(self.client, self.inventory, ctx, self._task_poll(ctx))
            raise
        if result is None:
            return Retry(self._task_poll(ctx), f"clone of VM {ctx.request.id} still running")
        state.clone_task = None
        if not hasattr(result, "_moId"):
            return False
        state.vm_moid = state.infra_id = str(result._moId)
        ctx.event(f"VM {state.vm_moid} cloned")
        return True

    def _configure_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """configure-vm for a batch: the VMs to compare were read as their clones
        ended, or are read now in one round trip (see ``talprov.vmware.reads``)."""
        moids = [c.state.vm_moid for c in ctxs
                 if c.state.vm_moid is not None and c.state.reconfig_task is None]
        read = self._configure_reads.for_batch(moids)
        return steps_side_by_side(lambda ctx: self._configure_vm(ctx, read), ctxs)

    def _configure_vm(self, ctx: Ctx, read: Mapping[str, VmRead]) -> StepResult:
        """Bring CPU, memory, disk, NICs and extraConfig in line; record the BIOS UUID.

        The VM's properties come from ``read`` when the batch read them already.
        A VM read right after its clone succeeded has the spec's extraConfig and
        devices (the clone applied them): only its sizes are compared."""
        state = ctx.state
        moid = state.vm_moid
        assert moid is not None
        if state.reconfig_task is not None:
            return self._reconfigured(ctx, state.reconfig_task)

        def run(si: ServiceInstance) -> tuple[str | None, str]:
            got = read.get(moid)
            if got is None or not got.props:  # missed by the batch read: ask once more
                got = self._configure_reads.one(moid)
            props = got.props
            if not props:
                raise NotFound(f"VM {moid} disappeared")
            if got.cloned:
                spec = machines.needs_resize(props, ctx.data)
            else:
                extra = machines.extra_config(ctx.owner, ctx.request,
                                              self._user_data(ctx.request))
                networks = self.inventory.placement(si, ctx.data).networks
                spec = machines.needs_reconfigure(props, ctx.data, extra, networks)
            if spec is None:
                return None, str(props["config.uuid"])
            return str(vm_ref(si, moid).ReconfigVM_Task(spec)._moId), str(props["config.uuid"])

        task, bios_uuid = self._with_inventory(f"configure VM {moid}", run)
        state.machine_uuid = bios_uuid
        if task is not None:
            state.reconfig_task = task
            ctx.event(f"reconfiguring VM {moid}")
            # Looked at at once: a reconfigure often ends within the call.
            return self._reconfigured(ctx, task)
        state.configured = True
        return None

    def _reconfigured(self, ctx: Ctx, task: str) -> StepResult:
        """Done once the reconfigure task succeeded (vCenter applied the whole spec,
        so the VM is not read again); a Retry while it runs. A failed task raises
        its fault and is forgotten, so the retry reads the VM and starts anew."""
        state = ctx.state
        try:
            if self.client.task_done(task, f"reconfigure VM {state.vm_moid}") is None:
                return Retry(self._task_poll(ctx), "reconfigure task running")
        except TaskFailed:
            state.reconfig_task = None
            raise
        state.reconfig_task = None
        state.configured = True
        return None

    def _tag_vm(self, ctx: Ctx) -> StepResult:
        """Attach ``provider_data.tags`` to the VM (those not attached yet). Idempotent.

        Raises ``InvalidRequest`` naming ``provider_data.tags[i]`` for a tag that
        does not exist; ``Transient`` when one vanished since it was resolved.
        """
        if not ctx.data.tags:
            return None
        moid = ctx.state.vm_moid
        assert moid is not None
        tag_ids = self.tagger.resolve(ctx.data.tags)
        attached = self.tagger.attach(moid, tag_ids)
        if attached:
            ctx.event(f"attached {len(attached)} tag(s) to VM {moid}")
        return None

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Shut down (power off hard after ``shutdown_timeout``) and destroy the request's VM.

        Idempotent: a VM that is already gone is success. Raises ``ProviderError``
        subclasses.
        """
        return self._deprovisioner.run(cast(Ctx, ctx))

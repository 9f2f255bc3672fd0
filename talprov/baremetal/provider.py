"""The bare-metal provider: a request takes an inventory machine and PXE-installs Talos.

Steps (each idempotent; see docs/architecture.md): ``allocate`` → ``prepare-boot`` →
``set-pxe`` → ``power-on`` → ``wait-installed``. The boot server (another
thread or process) reads what the steps wrote into the inventory and records
what the machine fetched; ``wait-installed`` reads that back. Deprovision boots
the machine into Talos's wipe mode, powers it off once the wipe ran, and gives
the machine back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from talprov.baremetal.boot import ipxe
from talprov.baremetal.boot.binding import ALERT_KINDS
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.data import BareMetalMachineData
from talprov.baremetal.deprovision import Deprovisioner
from talprov.baremetal.inventory import (
    Inventory,
    InventoryMachine,
    MachineStatus,
)
from talprov.baremetal.power.base import BootDevice, PowerDriver, PowerState
from talprov.baremetal.powers import PowerDrivers, PowerFactory
from talprov.baremetal.state import BareMetalState
from talprov.providers.errors import (
    CapacityError,
    InstanceUnavailable,
    InvalidRequest,
    ProviderError,
)
from talprov.providers.protocol import ProviderState, Runtime, Step, StepContext
from talprov.providers.types import (
    Health,
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Retry,
    StepResult,
)
from talprov.talos.assets import Platform, require_offered
from talprov.talos.factory import ImageFactory, images_for
from talprov.talos.join import join_only_config, user_data_for
from talprov.words import counted

log = logging.getLogger(__name__)

Ctx = StepContext[BareMetalMachineData, BareMetalState]

#: iPXE cannot chain a signed UKI here; secure boot needs the ISO or disk image.
PXE_SECURE_BOOT = "PXE boot of secure-boot images is not supported"

_STATE_OF = {
    MachineStatus.ALLOCATED: MachineState.PENDING,
    MachineStatus.PROVISIONED: MachineState.RUNNING,
    MachineStatus.WIPING: MachineState.STOPPING,
}


def owner_key(owner: Owner) -> str:
    return f"{owner.installation}/{owner.instance}"


def matches(machine: InventoryMachine, data: BareMetalMachineData) -> bool:
    """Whether ``machine`` is free and fits ``data`` (selector, minimums, name). Pure."""
    if machine.status != MachineStatus.AVAILABLE or machine.cordoned or machine.request_id:
        return False
    if data.machine is not None and machine.name != data.machine:
        return False
    if any(machine.labels.get(k) != v for k, v in data.selector.items()):
        return False
    for wanted, have in ((data.min_cpus, machine.cpus), (data.min_memory_mib, machine.memory_mib),
                         (data.min_disk_gb, machine.disk_gb)):
        if wanted is not None and (have is None or have < wanted):
            return False
    return True


def allocation_candidates(machines: Sequence[InventoryMachine], data: BareMetalMachineData
                          ) -> tuple[list[str], list[str]]:
    """The free machines that fit ``data``, as ``(with a BMC, without one)``, each by
    name. Allocation tries only the first list, in its order: a machine without a
    BMC address cannot be switched on, so a request that took it could never boot
    it. The second list says why a request waits. Name order keeps the choice the
    same whatever order ``machines`` came in. Pure."""
    fitting = sorted((m for m in machines if matches(m, data)), key=lambda m: m.name)
    return ([m.name for m in fitting if m.bmc.address],
            [m.name for m in fitting if not m.bmc.address])


def no_machine_message(without_bmc: Sequence[str], missing_name: str | None = None) -> str:
    """Why no machine could be allocated: ``missing_name`` (a ``provider_data.machine``
    that names no inventory machine, a typo more often than not), or up to three
    fitting machines that have no BMC address and how to give one. Pure."""
    if missing_name is not None:
        return (f"no machine named {missing_name} in the inventory (provider_data.machine); "
                f"the request waits until one is added (`talprov baremetal add "
                f"{missing_name} ...`) or is deleted")
    if not without_bmc:
        return "no available machine matches the request's provider_data"
    named = ", ".join(without_bmc[:3]) + (", ..." if len(without_bmc) > 3 else "")
    verb = "matches" if len(without_bmc) == 1 else "match"
    has = "has" if len(without_bmc) == 1 else "have"
    return (f"no available machine with a BMC matches the request's provider_data; "
            f"{named} {verb} but {has} no BMC address: give one with `talprov baremetal "
            f"set {without_bmc[0]} --bmc URL --bmc-user U --bmc-password REF`")


def check_mirror(mirror: Path, schematic_id: str, version: str, arch: str) -> None:
    """Raise ``InvalidRequest`` when the mirror lacks the kernel or initramfs asked for.

    Without this, iPXE gets a 404 and the request waits out install_timeout.
    Skipped when ``mirror`` is not a directory here: the boot server may run on
    another host (``talprov baremetal serve --file``), which then serves 404s.
    """
    if not mirror.is_dir():
        return
    folder = mirror / schematic_id / version
    for name in (f"kernel-{arch}", f"initramfs-{arch}.xz"):
        if not (folder / name).is_file():
            raise InvalidRequest(
                f"the mirror has no {folder / name}: extensions, kernel args and META change "
                "the schematic id and so the folder (`talprov image id --local --request FILE` "
                "prints it)", field="mirror_dir")


def check_factory(factory: ImageFactory, schematic_id: str, version: str, arch: str) -> None:
    """Raise ``InvalidRequest`` when the Image Factory answers 404 for the kernel or
    initramfs. Only a definite 404 fails: iPXE would get the same and the request
    would wait out install_timeout; an unreachable factory may still be reachable
    for the machines.
    """
    for name in (f"kernel-{arch}", f"initramfs-{arch}.xz"):
        url = factory.asset_url(schematic_id, version, name)
        if factory.has_asset(url) is False:
            raise InvalidRequest(f"the Image Factory has no {url} (is {version} a release "
                                 "it builds?)", field="talos_version")


def served_config(request: MachineRequest) -> str:
    """What the boot server hands the machine once at ``talos.config``.

    A machine that joins Omni gets the join documents alone (and the request's
    extra typed documents): never a v1alpha1 config with the cluster's CA keys,
    which Omni sends over SideroLink itself (see
    :func:`talprov.talos.join.join_only_config`). Any other machine gets its
    named config. Raises ``InvalidRequest`` naming ``machine_config``. Pure.
    """
    if request.join is not None:
        return join_only_config(request)
    return user_data_for(request)


class BareMetalProvider:
    """Provisions Talos on inventory machines over IPMI/Redfish and PXE."""

    type_name: ClassVar[str] = "baremetal"
    # Typed as the protocol declares them (ClassVars of a Protocol are invariant).
    config_model: ClassVar[type[BaseModel]] = BareMetalConfig
    data_model: ClassVar[type[BaseModel]] = BareMetalMachineData
    state_model: ClassVar[type[ProviderState]] = BareMetalState

    def __init__(self, name: str, config: BareMetalConfig, runtime: Runtime, *,
                 power: PowerFactory | None = None) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.inventory = Inventory(config.inventory, clock=runtime.clock)
        self._drivers = PowerDrivers(config)
        self._power = power or self._drivers
        self._observed: dict[str, tuple[float, PowerState]] = {}
        self._observed_lock = threading.Lock()
        self._deprovisioner = Deprovisioner(config, self.inventory, runtime.clock, self.power,
                                            self.boot_assets)

    def __repr__(self) -> str:
        return f"BareMetalProvider({self.name!r}, {self.config.inventory!r})"

    def power(self, machine: InventoryMachine) -> PowerDriver:
        """The power driver of ``machine`` (credentials resolved now, never logged;
        a Redfish BMC's session is kept until :meth:`close`)."""
        return self._power(machine)

    def close(self) -> None:
        """Log out of the Redfish sessions this instance holds. Idempotent."""
        self._drivers.close()

    # -- observing ----------------------------------------------------------

    def list_machines(self, owner: Owner) -> list[Machine]:
        """The inventory machines ``owner`` holds, with a rate-limited power state.

        One BMC query per machine at most every ``observe_interval`` seconds; a
        BMC that does not answer shows power ``unknown`` (never fails the
        listing). Read-only.
        """
        machines = []
        for m in self.inventory.owned_by(owner_key(owner)):
            power = self._observed_power(m)
            machines.append(Machine(
                infra_id=m.name, state=_STATE_OF.get(m.status, MachineState.UNKNOWN),
                request_id=m.request_id, machine_uuid=m.uuid, labels=dict(m.labels),
                extra={"power": str(power), "inventory_state": str(m.status)},
            ))
        return machines

    def _observed_power(self, machine: InventoryMachine) -> PowerState:
        now = self.runtime.clock()
        with self._observed_lock:
            seen = self._observed.get(machine.name)
        if seen is not None and now - seen[0] < self.config.observe_interval:
            return seen[1]
        try:
            state = self.power(machine).power_state()
        except (ProviderError, ValueError) as exc:
            log.info("power state of %s unknown: %s", machine.name, exc)
            state = PowerState.UNKNOWN
        with self._observed_lock:
            self._observed[machine.name] = (now, state)
        return state

    def health(self) -> Health:
        """Whether the inventory opens. Never raises."""
        try:
            machines = self.inventory.machines()
        except (sqlite3.Error, OSError) as exc:
            # SQLite's own words ("file is not a database", "unable to open
            # database file") name the problem; they hold no data.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            return Health(ok=False, message=f"inventory {self.config.inventory}: cannot be "
                          f"read ({reason})")
        except Exception as exc:  # health never raises
            return Health(ok=False, message=f"inventory {self.config.inventory}: unexpected "
                          f"{type(exc).__name__} while reading it")
        free = sum(1 for m in machines if m.status == MachineStatus.AVAILABLE and not m.cordoned)
        return Health(ok=True, message=f"{counted(len(machines), 'machine')}, {free} available")

    def boot_alert_counts(self) -> dict[str, int]:
        """How often the boot server of this instance raised each alert kind
        (:data:`~talprov.baremetal.boot.binding.ALERT_KINDS`), read from the
        inventory's audit log, so whichever process runs the boot server is counted.
        Read-only; raises ``sqlite3.Error`` when the inventory cannot be read."""
        return self.inventory.audit_counts(ALERT_KINDS)

    # -- steps --------------------------------------------------------------

    def steps(self) -> Sequence[Step]:
        """The provisioning steps, in order. Each is idempotent."""
        return [
            Step("allocate", self._allocate),
            Step("prepare-boot", self._prepare_boot),
            Step("set-pxe", self._set_pxe),
            Step("power-on", self._power_on),
            # Power-on is done as soon as the BMC accepts it, so this step's clock
            # starts at power-on.
            Step("wait-installed", self._wait_installed, timeout=self.config.install_timeout),
        ]

    def held(self, ctx: Ctx) -> InventoryMachine:
        machine = self.inventory.held_by(ctx.request.id)
        if machine is None:
            raise ProviderError(f"machine {ctx.state.machine} is no longer held by this request "
                                "(removed from the inventory?)")
        return machine

    def _allocate(self, ctx: Ctx) -> StepResult:
        """Take the first free matching machine with a BMC (see
        :func:`allocation_candidates`), or the one this request already holds."""
        held = self.inventory.held_by(ctx.request.id)
        without_bmc: list[str] = []
        if held is None:
            machines = self.inventory.machines()
            candidates, without_bmc = allocation_candidates(machines, ctx.data)
            held = self.inventory.allocate(ctx.request.id, owner_key(ctx.owner), candidates)
        if held is None:
            wanted = ctx.data.machine
            missing = wanted if wanted and all(m.name != wanted for m in machines) else None
            raise CapacityError(no_machine_message(without_bmc, missing), retry_after=30.0)
        ctx.state.machine = held.name
        ctx.state.infra_id = held.name
        ctx.state.machine_uuid = held.uuid
        ctx.event(f"allocated machine {held.name}")
        return None

    def check_request(self, request: MachineRequest) -> None:
        """Pre-flight (no BMC or factory call): a PXE boot of the request's arch and
        version exists, without secure boot, and the boot server would serve the
        request's config (no full machine config beside an Omni join, see
        :func:`served_config`).

        Raises ``InvalidRequest`` (field ``arch``, ``secure_boot`` or
        ``machine_config``). Idempotent.
        """
        if request.secure_boot:
            raise InvalidRequest(PXE_SECURE_BOOT, field="secure_boot")
        require_offered(Platform.METAL, request)
        served_config(request)

    def boot_assets(self, request: MachineRequest, *, check: bool = False) -> tuple[str, str]:
        """Kernel and initramfs URLs for the request's schematic and version.

        With a mirror the schematic id is computed locally; otherwise the schematic
        is registered with the Image Factory (idempotent). With ``check`` (the
        prepare step; not the wipe, which must go on whatever), the mirror or the
        factory must hold both files. Raises ``InvalidRequest``, ``AuthError`` or
        ``Transient`` from the factory, and ``InstanceUnavailable`` for a factory
        with credentials without ``proxy_factory`` or ``mirror_dir`` (iPXE has
        none): also from the wipe of a machine without a boot plan, so such a
        deletion waits for the setting too.
        """
        from talprov.talos.schematic import Schematic

        if request.secure_boot:
            raise InvalidRequest(PXE_SECURE_BOOT, field="secure_boot")
        schematic = Schematic.from_request(request)
        if self.config.mirror_dir:
            schematic_id = schematic.id()
            if check:
                check_mirror(Path(self.config.mirror_dir), schematic_id,
                             request.talos_version, str(request.arch))
        else:
            factory = images_for(self.runtime)
            if factory.authenticated and not self.config.proxy_factory:
                raise InstanceUnavailable(
                    f"the Image Factory {factory.base_url} needs credentials, which iPXE on "
                    "the machines does not have: set proxy_factory: true (the boot server "
                    "fetches with them) or mirror_dir")
            schematic_id = factory.register(schematic)
            if check:
                check_factory(factory, schematic_id, request.talos_version, str(request.arch))
        return ipxe.asset_urls(self.config, self.runtime.factory_url, schematic_id,
                               request.talos_version, str(request.arch))

    def _prepare_boot(self, ctx: Ctx) -> StepResult:
        machine = self.held(ctx)
        if machine.config_fetched_at is not None or machine.status != MachineStatus.ALLOCATED:
            return None
        kernel, initramfs = self.boot_assets(ctx.request, check=True)
        plan = ipxe.install_plan(self.config, ctx.request, kernel, initramfs)
        config = served_config(ctx.request)
        self.inventory.set_install(machine.name, ctx.request.id, plan, config)
        return None

    def _set_pxe(self, ctx: Ctx) -> StepResult:
        if not ctx.state.pxe_set:
            self.power(self.held(ctx)).set_next_boot(BootDevice.PXE)
            ctx.state.pxe_set = True
        return None

    def _power_on(self, ctx: Ctx) -> StepResult:
        if ctx.state.powered_at is None:
            driver = self.power(self.held(ctx))
            if self.config.power_action == "cycle":
                driver.power_cycle()
            else:
                driver.power_on()
            ctx.state.powered_at = self.runtime.clock()
            ctx.event("machine powered on to PXE-boot")
        return None

    def _wait_installed(self, ctx: Ctx) -> StepResult:
        machine = self.held(ctx)
        if machine.config_fetched_at is not None:
            self.inventory.mark_provisioned(machine.name, ctx.request.id)
            ctx.state.machine_uuid = machine.uuid
            return None
        waiting = f"machine {machine.name} did not fetch its config yet"
        if machine.script_fetched_at is not None and (
                ctx.state.powered_at is None or machine.script_fetched_at >= ctx.state.powered_at):
            return Retry(self.config.poll_interval, f"{waiting} (boot script fetched)")
        return Retry(self.config.poll_interval, f"{waiting} (no PXE boot seen)")

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Wipe the machine (PXE into wipe mode), power it off, give it back.

        Idempotent: a request that holds no machine is gone (``None``). Returns
        ``Retry`` while the wipe runs. Raises ``AuthError`` / ``Transient`` from
        the BMC.
        """
        return self._deprovisioner.run(ctx)

"""Giving a machine back: wipe boot, power off after the wipe, release.

Talos wipes its system disk early in boot when started with
``talos.experimental.wipe=system``. Nothing reports back from a stock Talos, so
the wipe counts as done ``wipe_seconds`` after the machine fetched the wipe
kernel from the boot server, or its wipe script when the kernel comes from the
Image Factory directly (or as soon as the image calls the ``talprov.wipe_report=``
URL of its script, which carries a single-use token). A wipe that never started within
``wipe_timeout`` powers the machine off and leaves it cordoned: its disks may
still hold the old cluster's secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talprov.baremetal.boot import ipxe
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BootPlan, Inventory, InventoryMachine, MachineStatus
from talprov.baremetal.power.base import BootDevice
from talprov.baremetal.powers import PowerFactory
from talprov.providers.protocol import StepContext
from talprov.providers.types import MachineRequest, Retry, StepResult

#: Kernel and initramfs URLs of a request's image (the provider's ``boot_assets``).
BootAssets = Callable[[MachineRequest], tuple[str, str]]


class Deprovisioner:
    """The deprovision state machine of the bare-metal provider.

    It gets what it needs from the provider as values and callbacks (the
    inventory, the power driver factory, the boot-asset lookup), so this module
    and the provider's do not import each other.
    """

    def __init__(self, config: BareMetalConfig, inventory: Inventory,
                 clock: Callable[[], float], power: PowerFactory,
                 boot_assets: BootAssets) -> None:
        self.config = config
        self.inventory = inventory
        self.clock = clock
        self.power = power
        self.boot_assets = boot_assets

    def run(self, ctx: StepContext[Any, Any]) -> StepResult:
        """One idempotent pass; see the module docstring."""
        inventory = self.inventory
        machine = inventory.held_by(ctx.request.id)
        if machine is None:
            return None
        clock = self.clock
        if (machine.status == MachineStatus.ALLOCATED and not ctx.state.pxe_set
                and machine.script_fetched_at is None):
            # The BMC was never told anything and the machine never booted from
            # us: nothing reached its disk, so there is nothing to wipe (this is
            # also how a request that failed on BMC credentials lets go).
            inventory.release(machine.name, ctx.request.id)
            ctx.event(f"machine {machine.name} released (never booted)")
            return None
        if machine.status != MachineStatus.WIPING:
            inventory.start_wipe(machine.name, ctx.request.id, self._wipe_plan(ctx, machine))
            ctx.event(f"machine {machine.name}: wipe boot prepared")
            machine = inventory.held_by(ctx.request.id) or machine
        power = self.power(machine)
        if not ctx.state.wipe_pxe_set:
            power.set_next_boot(BootDevice.PXE)
            ctx.state.wipe_pxe_set = True
        if ctx.state.wipe_powered_at is None:
            power.power_cycle()
            ctx.state.wipe_powered_at = clock()
            ctx.event(f"machine {machine.name}: restarted into wipe mode")
        config = self.config
        now = clock()
        started = self._wipe_started(machine)
        wiped = machine.wipe_reported_at is not None or (
            started is not None and now - started >= config.wipe_seconds)
        timed_out = now - ctx.state.wipe_powered_at > config.wipe_timeout
        if not (wiped or timed_out):
            return Retry(config.poll_interval, "waiting for the wipe to finish")
        if not ctx.state.powered_off:
            power.power_off()
            ctx.state.powered_off = True
            ctx.event(f"machine {machine.name}: powered off after "
                      + ("the wipe" if wiped else "the wipe timed out"))
        if timed_out and not wiped:
            inventory.cordon(machine.name, f"the wipe never started for request "
                             f"{ctx.request.id} (wipe_timeout): the disk may hold its secrets")
            inventory.record_audit("wipe-timeout", machine=machine.name, uuid=machine.uuid)
        inventory.release(machine.name, ctx.request.id)
        ctx.event(f"machine {machine.name} released")
        return None

    def _wipe_started(self, machine: InventoryMachine) -> float | None:
        """When the wipe image started, as far as the boot server can tell.

        The kernel fetch when the boot server serves the kernel (``mirror_dir`` or
        ``proxy_factory``); otherwise iPXE fetches it from the Image Factory, out of
        sight, and the fetch of the wipe script (the step just before) stands in.
        """
        kernel_url = machine.boot.kernel_url if machine.boot is not None else ""
        if kernel_url.startswith(self.config.boot_url.rstrip("/") + "/"):
            return machine.kernel_fetched_at
        return machine.script_fetched_at

    def _wipe_plan(self, ctx: StepContext[Any, Any], machine: InventoryMachine) -> BootPlan:
        config = self.config
        if machine.boot is not None:
            kernel, initramfs = machine.boot.kernel_url, machine.boot.initramfs_url
        else:
            kernel, initramfs = self.boot_assets(ctx.request)
        return ipxe.wipe_plan(config, kernel, initramfs, ctx.request.talos_version,
                              ctx.request.arch)

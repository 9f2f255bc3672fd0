"""Machines that PXE-boot against the boot server's real HTTP endpoints, behind a power double.

Each :class:`PxeMachine` is a power driver (what a BMC controls) whose "machine",
when it is switched on to boot from the network, does what iPXE and the Talos
image do against the boot server on 127.0.0.1: fetch its boot script
(``/boot.ipxe?uuid=…&mac=…``), the kernel when the boot server serves it, the
machine config (``talos.config=``) and, in wipe mode, call the wipe report URL.
Everything is plain HTTP to loopback and happens inside the power call, so a
fake clock keeps the provider's waits instant. :class:`PxeLab` holds the
machines of one inventory and hands them to the provider as its power factory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx

from talprov.baremetal.inventory import InventoryMachine
from talprov.baremetal.power.base import BootDevice, PowerState

WIPE_REPORT_ARG = "talprov.wipe_report="
CONFIG_ARG = "talos.config="


@dataclass
class PxeMachine:
    """One machine and its BMC: power state, the next boot device, what it fetched."""

    uuid: str
    mac: str
    boot_url: str
    state: PowerState = PowerState.OFF
    next_boot: BootDevice | None = None
    #: Machine configs the machine received, in order.
    configs: list[str] = field(default_factory=list)
    #: Boot scripts it fetched, in order.
    scripts: list[str] = field(default_factory=list)

    def power_state(self) -> PowerState:
        return self.state

    def power_on(self) -> None:
        if self.state == PowerState.OFF:
            self._boot()

    def power_off(self) -> None:
        self.state = PowerState.OFF

    def power_cycle(self) -> None:
        self._boot()

    def set_next_boot(self, device: BootDevice) -> None:
        self.next_boot = device

    def _boot(self) -> None:
        self.state = PowerState.ON
        device, self.next_boot = self.next_boot, None
        if device != BootDevice.PXE:
            return
        with httpx.Client(trust_env=False, timeout=10) as http:
            script = http.get(f"{self.boot_url}/boot.ipxe",
                              params={"uuid": self.uuid, "mac": self.mac}).text
            self.scripts.append(script)
            kernel_line = next((line for line in script.splitlines()
                                if line.startswith("kernel ")), "")
            args = kernel_line.split()
            if len(args) > 1 and args[1].startswith(self.boot_url):
                http.get(args[1]).raise_for_status()
            for arg in args[2:]:
                if arg.startswith(CONFIG_ARG):
                    answer = http.get(arg.removeprefix(CONFIG_ARG))
                    answer.raise_for_status()
                    self.configs.append(answer.text)
                elif arg.startswith(WIPE_REPORT_ARG):
                    http.get(arg.removeprefix(WIPE_REPORT_ARG)).raise_for_status()


class PxeLab:
    """The machines of one inventory; ``power`` is the provider's power factory."""

    def __init__(self, boot_url: str) -> None:
        self.boot_url = boot_url.rstrip("/")
        self.machines: dict[str, PxeMachine] = {}
        self._lock = threading.Lock()

    def power(self, machine: InventoryMachine) -> PxeMachine:
        with self._lock:
            found = self.machines.get(machine.name)
            if found is None:
                found = PxeMachine(uuid=machine.uuid or "", mac=machine.macs[0],
                                   boot_url=self.boot_url)
                self.machines[machine.name] = found
            return found

    def powered_on(self) -> int:
        """How many machines are running (the platform's truth for the contract suite)."""
        with self._lock:
            return sum(1 for m in self.machines.values() if m.state == PowerState.ON)

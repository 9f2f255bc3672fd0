"""Bare metal as a chaos platform: an inventory of machines, half behind Redfish BMCs
(sushy-tools, :mod:`tests.chaos.redfish_bmc`) and half behind IPMI BMCs (ipmi_sim,
as in tests/emulators/baremetal/rig.py), every BMC behind its own fault proxy
(HTTP :class:`~tests.chaos.proxy.FaultProxy` for Redfish, :class:`UdpFaultProxy`
for IPMI), and the boot server's HTTP endpoints on 127.0.0.1 in this process.

No machine boots an OS: a QEMU/iPXE boot per round would take minutes. A BMC's
power-on with the PXE override runs the stand-in the bare-metal contract tests
use (:class:`~tests.emulators.baremetal.pxe_machine.PxeMachine`: the boot script,
kernel, config and wipe report fetched from the boot server as iPXE and Talos
would). So the rounds test the driver's BMC calls, allocation, boot-server
bookkeeping and wipe/release under kills and faults; not iPXE, DHCP, TFTP or a
real disk wipe (tests/unit/baremetal/test_rig.py boots real VMs for those).

What a request holds: the inventory machines allocated to it. Ownerless: a
machine that is free but powered on (its BMC asked directly, not through the
proxy), and a cordoned machine (a wipe that timed out takes it out of service).
"""

from __future__ import annotations

import json
import sys
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import httpx

from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BmcInfo, Inventory, MachineStatus
from talprov.demo_platforms.common import EmulatorProcess, start_emulator
from tests.chaos.observed import ObservedPlatform
from tests.chaos.proxy import Dialect, FaultProxy
from tests.chaos.udp_proxy import UdpFaultProxy
from tests.emulators.baremetal.rig import BMC_USER, VirtualMachine, start_bmc
from tests.emulators.baremetal.sushy import PASSWORD as REDFISH_PASSWORD
from tests.emulators.baremetal.sushy import USER as REDFISH_USER
from tests.emulators.moto import free_port
from tests.helpers import REPO

MACHINES = 8  # more than the live requests of a round ever need
REDFISH = Dialect(
    error=(500, "application/json",
           b'{"error": {"code": "Base.1.0.GeneralError", "message": "injected by the chaos '
           b'proxy", "@Message.ExtendedInfo": []}}'),
    throttle=(503, "application/json",
              b'{"error": {"code": "Base.1.0.ServiceTemporarilyUnavailable", '
              b'"message": "throttled by the chaos proxy", "@Message.ExtendedInfo": []}}'),
)


class FaultGroup:
    """Several proxies as one: ``rate`` sets them all, ``injected`` adds them up (all
    that :class:`~tests.chaos.rounds.ChaosRun` uses of a platform's proxy)."""

    def __init__(self, proxies: list[FaultProxy | UdpFaultProxy]) -> None:
        self.proxies = proxies

    @property
    def rate(self) -> float:
        return self.proxies[0].rate

    @rate.setter
    def rate(self, value: float) -> None:
        for proxy in self.proxies:
            proxy.rate = value

    @property
    def injected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for proxy in self.proxies:
            total.update(proxy.injected)
        return total


def start_redfish_bmc(folder: Path, name: str, uuid: str, mac: str,
                      boot_url: str) -> tuple[EmulatorProcess, str]:
    """A Redfish BMC (:mod:`tests.chaos.redfish_bmc`) for one machine; process and URL."""
    import bcrypt

    folder.mkdir(parents=True)
    hashed = bcrypt.hashpw(REDFISH_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (folder / "htpasswd").write_text(f"{REDFISH_USER}:{hashed}\n")
    config = folder / "bmc.json"
    config.write_text(json.dumps({"htpasswd": str(folder / "htpasswd"), "name": name,
                                  "state_dir": str(folder / "state"), "uuid": uuid,
                                  "mac": mac, "boot_url": boot_url}))
    return start_emulator(f"redfish {name}", [sys.executable, "-m", "tests.chaos.redfish_bmc",
                                              str(config)],
                          folder / "bmc.log", "redfish listening on ",
                          env={"PYTHONPATH": str(REPO)})


def guest_wrapper(folder: Path, boot_url: str) -> Path:
    """The program ipmi_sim's chassis runs as "QEMU": :mod:`tests.chaos.pxe_guest`."""
    script = folder / "pxe-guest"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m "
                      f"tests.chaos.pxe_guest --boot-url {boot_url} \"$@\"\n")
    script.chmod(0o755)
    return script


def _ipmi_machine(folder: Path, name: str, uuid: str, mac: str,
                  guest: Path) -> VirtualMachine:
    vm = VirtualMachine(name=name, uuid=uuid, mac=mac, tap="", vmdir=folder)
    folder.mkdir(parents=True)
    (folder / "vm.json").write_text(json.dumps({
        "name": name, "uuid": uuid, "mac": mac, "tap": "", "netns": "", "qemu": str(guest)}))
    start_bmc(vm)
    return vm


@contextmanager
def baremetal_platform(workdir: Path, seed: int,
                       factory_url: str) -> Iterator[ObservedPlatform]:
    """The inventory, its BMCs behind proxies, and the boot server; see the module doc."""
    root = workdir / "baremetal"
    root.mkdir()
    port = free_port()
    block: dict[str, Any] = {
        "inventory": str(root / "inventory.sqlite"), "boot_url": f"http://127.0.0.1:{port}",
        "listen_address": "127.0.0.1", "listen_port": port, "tftp_enabled": False,
        "poll_interval": 0.5, "observe_interval": 5.0, "bmc_min_interval": 0.05,
        "install_timeout": 60.0, "wipe_seconds": 1.0, "wipe_timeout": 60.0}
    settings = BareMetalConfig.model_validate(block)
    inventory = Inventory(settings.inventory)
    guest = guest_wrapper(root, settings.boot_url)
    proxies: list[FaultProxy | UdpFaultProxy] = []
    power_of: dict[str, Any] = {}  # machine name -> reads its power state at the BMC
    with ExitStack() as stack:
        for index in range(MACHINES):
            name = f"node-{index}"
            uuid = str(uuidlib.UUID(int=(seed << 64) + index + 1, version=4))
            mac = f"52:54:00:c4:{seed % 256:02x}:{index:02x}"
            if index % 2 == 0:
                emulator, url = start_redfish_bmc(root / name, name, uuid, mac,
                                                  settings.boot_url)
                stack.callback(emulator.stop)
                proxy = FaultProxy(url, REDFISH, seed * 100 + index).start()
                stack.callback(proxy.stop)
                bmc = BmcInfo(kind="redfish", address=proxy.url, username=REDFISH_USER,
                              password_ref=REDFISH_PASSWORD, verify_tls=False)
                power_of[name] = _redfish_power(url, uuid)
                proxies.append(proxy)
            else:
                vm = _ipmi_machine(root / name, name, uuid, mac, guest)
                stack.callback(vm.stop)
                udp = UdpFaultProxy(vm.bmc_port, seed * 100 + index).start()
                stack.callback(udp.stop)
                bmc = BmcInfo(kind="ipmi", address="127.0.0.1", port=udp.port,
                              username=BMC_USER, password_ref=vm.password)
                power_of[name] = vm.powered
                proxies.append(udp)
            inventory.add(name, uuid=uuid, macs=[mac], bmc=bmc, labels={"rack": "chaos"})
        server = HttpBootServer(BootHttp(settings, inventory, factory_url),
                                "127.0.0.1", port)
        server.start()
        stack.callback(server.stop)
        seen: dict[str, Any] = {"machines": [], "on": set()}

        def refresh() -> None:
            seen["machines"] = inventory.machines()
            seen["on"] = {name for name, powered in power_of.items() if powered()}

        def resources_of(request_id: str) -> dict[str, int]:
            return {"machines": sum(1 for m in seen["machines"] if m.request_id == request_id)}

        def leftovers() -> dict[str, int]:
            free = [m for m in seen["machines"] if m.status == MachineStatus.AVAILABLE]
            return {"free_but_powered_on": sum(1 for m in free if m.name in seen["on"]),
                    "cordoned": sum(1 for m in seen["machines"] if m.cordoned)}

        # rounds.py reads and sets only ``rate`` and ``injected`` of a platform's proxy.
        group = cast(FaultProxy, FaultGroup(proxies))
        yield ObservedPlatform("baremetal", group, {"type": "baremetal", **block}, {},
                               resources_of, refresh=refresh, leftovers=leftovers)


def _redfish_power(url: str, uuid: str) -> Any:
    def powered() -> bool:
        answer = httpx.get(f"{url}/redfish/v1/Systems/{uuid}", trust_env=False, timeout=10,
                           auth=(REDFISH_USER, REDFISH_PASSWORD))
        answer.raise_for_status()
        return bool(answer.json().get("PowerState") == "On")

    return powered


"""An Omni join reaches a PXE-booted machine: in its schematic and command line, or its config.

The reconciler provisions through the real provider; the simulated machine asks the
boot server over HTTP on 127.0.0.1 for its iPXE script and then its config, as
iPXE and Talos would, and the kernel comes from the fake Image Factory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from talprov.baremetal.boot.http import HttpBootServer
from talprov.baremetal.power.base import BootDevice, PowerState
from talprov.providers.types import MachineRequest, Stage
from tests.emulators.factory import FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.helpers import WORKER_CONFIG
from tests.unit.baremetal.test_provider import UUIDS, Setup, SimulatedMachine
from tests.unit.join_checks import (
    EVENTS_ARG,
    JOIN_TOKEN,
    KMSG_ARG,
    MODES,
    SIDEROLINK_ARG,
    assert_join_delivered,
    join,
)


class HttpMachine(SimulatedMachine):
    """A machine that PXE-boots over HTTP: script from the boot server, then its config."""

    def __init__(self, setup: Setup, name: str, server_url: str) -> None:
        machine = setup.inventory.get(name)
        assert machine is not None
        super().__init__(machine, setup.app)
        self.server_url = server_url
        self.scripts: list[str] = []

    def _local(self, url: str) -> str:
        # The boot server announces itself as boot_url; it listens on 127.0.0.1 here.
        return url.replace(self.app.config.boot_url.rstrip("/"), self.server_url)

    def _boot(self) -> None:
        self.state = PowerState.ON
        device, self.next_boot = self.next_boot, None
        if device != BootDevice.PXE:
            return
        reply = httpx.get(f"{self.server_url}/boot.ipxe",
                          params={"uuid": UUIDS[self.machine.name], "mac": self.machine.macs[0]})
        reply.raise_for_status()
        self.scripts.append(reply.text)
        for arg in reply.text.split():
            if arg.startswith("talos.config="):
                config = httpx.get(self._local(arg.removeprefix("talos.config=")))
                config.raise_for_status()
                self.configs.append(config.text)


@pytest.fixture
def served(tmp_path: Path, image_factory: FakeImageFactory) -> Iterator[Setup]:
    setup = Setup(tmp_path, factory_url=image_factory.url, mirror_dir=None)
    server = HttpBootServer(setup.app, "127.0.0.1", 0)
    server.start()
    try:
        for name in UUIDS:
            setup.machines[name] = HttpMachine(setup, name, f"http://127.0.0.1:{server.port}")
        yield setup
    finally:
        server.stop()


def provision(setup: Setup, mode: str) -> tuple[str, list[str], str]:
    """(schematic id of the kernel, kernel command line, config) the machine booted with."""
    setup.store.create_request(MachineRequest(
        id="r1", provider="bm", talos_version="v1.11.5",
        machine_config=SecretStr(WORKER_CONFIG), kernel_args=("net.ifnames=0",),
        join=join(mode), provider_data={"machine": "m0"}))
    record = setup.settle("r1", Stage.PROVISIONED, Stage.FAILED)
    assert record.stage == Stage.PROVISIONED, record.error
    machine = setup.machines["m0"]
    assert isinstance(machine, HttpMachine)
    (script,) = machine.scripts
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    found = re.search(r"/image/([0-9a-f]{64})/v1\.11\.5/kernel-amd64 ", kernel_line)
    assert found is not None, "the kernel does not come from the factory"
    (config,) = machine.configs
    assert JOIN_TOKEN not in " ".join(e.message for e in setup.store.events("r1"))
    assert JOIN_TOKEN not in (record.error or "")
    return found.group(1), kernel_line.split()[2:], config


@pytest.mark.parametrize("mode", MODES)
def test_the_join_reaches_the_machine(
    served: Setup, image_factory: FakeImageFactory, mode: str,
) -> None:
    # kernel_args: in the kernel's schematic and, as on the factory's own PXE script,
    # on the command line; documents: in the config the boot server serves once.
    schematic_id, cmdline, config = provision(served, mode)
    assert_join_delivered(mode, image_factory, schematic_id, config)
    assert "net.ifnames=0" in cmdline
    on_cmdline = {SIDEROLINK_ARG, EVENTS_ARG, KMSG_ARG} <= set(cmdline)
    assert on_cmdline is (mode == "kernel_args")
    assert any(JOIN_TOKEN in arg for arg in cmdline) is (mode == "kernel_args")

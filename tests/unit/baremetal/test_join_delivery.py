"""An Omni join reaches a PXE-booted machine: its join documents alone, and in kernel-args
mode its schematic and command line too; never a full machine config.

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
from talprov.providers.errors import InvalidRequest
from talprov.providers.types import MachineRequest, Stage
from talprov.talos.configschema import check_config
from talprov.talos.join import JOIN_KINDS, join_documents
from talprov.talos.machineconfig import load_documents
from talprov.talos.versions import SUPPORTED_LINES
from tests.emulators.factory import FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.helpers import CANARY_CONFIG, WORKER_CONFIG
from tests.unit.baremetal.test_provider import UUIDS, Setup, SimulatedMachine
from tests.unit.join_checks import (
    EVENTS_ARG,
    JOIN_TOKEN,
    KMSG_ARG,
    MODES,
    SIDEROLINK_ARG,
    assert_join_in_config,
    assert_join_in_schematic,
    assert_no_join_in_schematic,
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


def provision(setup: Setup, mode: str, config: str = "") -> tuple[str, list[str], str]:
    """(schematic id of the kernel, kernel command line, config) the machine booted with."""
    setup.store.create_request(MachineRequest(
        id="r1", provider="bm", talos_version="v1.11.5",
        machine_config=SecretStr(config), kernel_args=("net.ifnames=0",),
        join=join(mode), provider_data={"machine": "m0"}))
    record = setup.settle("r1", Stage.PROVISIONED, Stage.FAILED)
    assert record.stage == Stage.PROVISIONED, record.error
    machine = setup.machines["m0"]
    assert isinstance(machine, HttpMachine)
    (script,) = machine.scripts
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    found = re.search(r"/image/([0-9a-f]{64})/v1\.11\.5/kernel-amd64 ", kernel_line)
    assert found is not None, "the kernel does not come from the factory"
    (served_config,) = machine.configs
    assert JOIN_TOKEN not in " ".join(e.message for e in setup.store.events("r1"))
    assert JOIN_TOKEN not in (record.error or "")
    return found.group(1), kernel_line.split()[2:], served_config


@pytest.mark.parametrize("mode", MODES)
def test_the_join_reaches_the_machine(
    served: Setup, image_factory: FakeImageFactory, mode: str,
) -> None:
    # kernel_args: also in the kernel's schematic and, as on the factory's own PXE
    # script, on the command line. Both modes: the join documents, and nothing else,
    # at talos.config, as Omni's bare-metal provider serves its machines.
    schematic_id, cmdline, config = provision(served, mode)
    if mode == "kernel_args":
        assert_join_in_schematic(image_factory, schematic_id)
    else:
        assert_no_join_in_schematic(image_factory, schematic_id)
    assert config == join_documents(join(mode))
    assert_join_in_config(config)
    assert "net.ifnames=0" in cmdline
    on_cmdline = {SIDEROLINK_ARG, EVENTS_ARG, KMSG_ARG} <= set(cmdline)
    assert on_cmdline is (mode == "kernel_args")
    assert any(JOIN_TOKEN in arg for arg in cmdline) is (mode == "kernel_args")


def test_join_documents_are_what_talos_takes_on_every_supported_line() -> None:
    # The three kinds exist in Talos's own schema of every line talprov supports,
    # and a config of them alone passes it (Talos then waits in maintenance for Omni).
    documents = load_documents(join_documents(join("documents")), "served")
    assert [d["kind"] for d in documents] == list(JOIN_KINDS)
    for major, minor in SUPPORTED_LINES:
        assert check_config(documents, "served", f"v{major}.{minor}.0") == []


@pytest.mark.parametrize("mode", MODES)
def test_a_joining_machine_never_gets_a_full_machine_config(
    served: Setup, mode: str,
) -> None:
    # A v1alpha1 config holds the cluster's CA keys; a joining machine gets its config
    # from Omni over SideroLink. The API refuses the request before it is recorded,
    # and a request recorded anyway fails at prepare-boot with nothing to fetch.
    request = MachineRequest(id="r1", provider="bm", talos_version="v1.11.5",
                             machine_config=SecretStr(WORKER_CONFIG), join=join(mode),
                             provider_data={"machine": "m0"})
    with pytest.raises(InvalidRequest) as refused:
        served.provider.check_request(request)
    assert refused.value.field == "machine_config"
    assert CANARY_CONFIG not in str(refused.value)
    served.store.create_request(request)
    record = served.settle("r1", Stage.PROVISIONED, Stage.FAILED)
    assert record.stage == Stage.FAILED
    assert "machine_config" in (record.error or "")
    machine = served.inventory.get("m0")
    assert machine is not None
    assert not machine.has_config
    assert served.machines.get("m0") is None or served.machines["m0"].configs == []


def test_extra_typed_documents_follow_the_join(served: Setup) -> None:
    extra = ("apiVersion: v1alpha1\nkind: TrustedRootsConfig\nname: corp-ca\n"
             "certificates: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n"
             "  -----END CERTIFICATE-----\n")
    _, _, config = provision(served, "documents", "---\n" + extra + "---\n")
    assert config == join_documents(join("documents")) + "---\n" + extra
    kinds = [d["kind"] for d in load_documents(config, "served")]
    assert kinds == [*JOIN_KINDS, "TrustedRootsConfig"]

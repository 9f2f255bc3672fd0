"""An Omni join reaches a Proxmox VM: in its factory ISO's schematic or in its seed ISO."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner
from talprov.proxmox import images
from talprov.proxmox.provider import ProxmoxProvider
from talprov.testing import FakeClock
from tests.driving import context, provision
from tests.emulators.factory import FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.emulators.fakepve import FakePveServer
from tests.unit.join_checks import JOIN_TOKEN, MODES, assert_join_delivered, join
from tests.unit.proxmox.conftest import machine_request, password_config


@pytest.fixture
def factory_provider(fakepve: FakePveServer, image_factory: FakeImageFactory,
                     clock: FakeClock, tmp_path: Path) -> ProxmoxProvider:
    """A provider whose boot ISO comes from the (fake) Image Factory, as in production."""
    runtime = Runtime(installation="talprov-test", cache_dir=tmp_path / "cache",
                      factory_url=image_factory.url, clock=clock, sleep=clock.sleep)
    return ProxmoxProvider("lab", password_config(fakepve), runtime)


def booted_with(fakepve: FakePveServer, vm_name: str) -> tuple[str, str]:
    """(schematic id of the ISO the VM boots, user-data of its seed ISO), read from fakepve."""
    vm = next(v for v in fakepve.vms() if v["name"] == vm_name)
    boot_file = vm["config"]["ide2"].split(",")[0].partition(":iso/")[2]
    downloads = [line for task in fakepve.control("tasks") for line in task.get("log", ())
                 if line.startswith("downloading ") and line.endswith(f" to {boot_file}")]
    assert len(downloads) == 1
    found = re.search(r"/image/([0-9a-f]{64})/v[^/]+/nocloud-amd64\.iso ", downloads[0])
    assert found is not None
    storage, _, seed = vm["config"]["ide3"].split(",")[0].partition(":iso/")
    seed_iso = base64.b64decode(fakepve.control("uploads")[storage][seed])
    return found.group(1), images.read_seed_iso(seed_iso)["user-data"]


@pytest.mark.parametrize("mode", MODES)
def test_the_join_reaches_the_vm(
    fakepve: FakePveServer, factory_provider: ProxmoxProvider, image_factory: FakeImageFactory,
    owner: Owner, clock: FakeClock, mode: str,
) -> None:
    # kernel_args: in the boot ISO's schematic; documents: in the seed ISO's user-data.
    ctx = context(factory_provider, machine_request("vm", join=join(mode)), owner)
    provision(factory_provider, [ctx], clock)
    schematic_id, user_data = booted_with(fakepve, "vm")
    assert_join_delivered(mode, image_factory, schematic_id, user_data)
    assert JOIN_TOKEN not in " ".join(ctx.events) + repr(ctx.state)


def test_kernel_args_join_on_a_named_iso_is_refused(
    fakepve: FakePveServer, factory_provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    request = machine_request("named", join=join("kernel_args"),
                              provider_data={"iso": "local:iso/talos.iso"})
    fakepve.control("set_storage", name="local", values={"files": ["talos.iso"]})
    ctx = context(factory_provider, request, owner)
    with pytest.raises(InvalidRequest) as caught:
        provision(factory_provider, [ctx], clock)
    assert caught.value.field == "provider_data.iso"
    assert JOIN_TOKEN not in str(caught.value)

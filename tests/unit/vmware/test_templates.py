"""Template handling: half-made imports, existing templates, linked clones, networks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Owner, Retry
from talprov.testing import FakeClock
from talprov.vmware.images import IMPORTED_KEY, IMPORTER_KEY, STARTED_KEY, template_name
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision, run_step
from tests.emulators.factory import EMPTY_SCHEMATIC_ID, FakeImageFactory
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, clone_out_of_band, nic_networks, portgroup_key

TEMPLATE = template_name(EMPTY_SCHEMATIC_ID, "v1.9.1", "amd64")
SOURCE_VM = "DC0_C0_RP0_VM0"


def _ova_hits(factory: FakeImageFactory) -> int:
    return sum(n for path, n in factory.hits.items() if path.endswith(".ova"))


def test_a_crashed_import_is_removed_and_imported_again(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    image_factory: FakeImageFactory,
) -> None:
    long_ago = str(int(time.time()) - 7200)
    clone_out_of_band(vcsim, SOURCE_VM, TEMPLATE, {STARTED_KEY: long_ago})
    crashed = all_vms(vcsim)[TEMPLATE][0]["moid"]
    ctx = context(provider, machine_request("t1"), owner)
    run_step(provider.steps()[0], ctx, clock)
    found = all_vms(vcsim)[TEMPLATE]
    assert len(found) == 1
    assert found[0]["moid"] != crashed
    assert found[0]["config.template"] is True
    assert _ova_hits(image_factory) == 1


def test_a_fresh_import_by_a_killed_local_process_is_replaced_at_once(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, owner: Owner,
    clock: FakeClock, image_factory: FakeImageFactory,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no running process now
    provider = make_provider(task_timeout=600.0)
    clone_out_of_band(vcsim, SOURCE_VM, TEMPLATE, {
        STARTED_KEY: str(int(time.time())),
        IMPORTER_KEY: f"{socket.gethostname()}:{dead.pid}",
    })
    crashed = all_vms(vcsim)[TEMPLATE][0]["moid"]
    ctx = context(provider, machine_request("t5"), owner)
    run_step(provider.steps()[0], ctx, clock)
    found = all_vms(vcsim)[TEMPLATE]
    assert [vm["moid"] for vm in found] != [crashed]
    assert len(found) == 1
    assert found[0]["config.template"] is True


def test_an_import_in_flight_elsewhere_is_waited_for(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, owner: Owner,
    clock: FakeClock, image_factory: FakeImageFactory,
) -> None:
    provider = make_provider(task_timeout=600.0)
    clone_out_of_band(vcsim, SOURCE_VM, TEMPLATE, {STARTED_KEY: str(int(time.time()))})
    ctx = context(provider, machine_request("t2"), owner)
    result = provider.steps()[0].run(ctx)
    assert isinstance(result, Retry)
    assert "being imported" in result.reason
    assert _ova_hits(image_factory) == 0
    assert len(all_vms(vcsim)[TEMPLATE]) == 1


def test_an_import_with_its_disks_in_is_finished_not_repeated(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    image_factory: FakeImageFactory,
) -> None:
    now = str(int(time.time()))
    clone_out_of_band(vcsim, SOURCE_VM, TEMPLATE, {STARTED_KEY: now, IMPORTED_KEY: now})
    ctx = context(provider, machine_request("t3"), owner)
    run_step(provider.steps()[0], ctx, clock)
    found = all_vms(vcsim)[TEMPLATE]
    assert len(found) == 1
    assert found[0]["config.template"] is True
    assert ctx.state.template_moid == found[0]["moid"]
    assert _ova_hits(image_factory) == 0


def test_an_existing_template_is_cloned_without_import(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    image_factory: FakeImageFactory,
) -> None:
    clone_out_of_band(vcsim, SOURCE_VM, "my-talos", {}, template=True)
    data = {"cluster": "DC0_C0", "template": "my-talos", "cpu": 2, "memory": 4096}
    ctx = context(provider, machine_request("u1", provider_data=data), owner)
    provision(provider, [ctx], clock)
    vms = all_vms(vcsim)
    assert ctx.state.template_moid == vms["my-talos"][0]["moid"]
    assert vms["u1"][0]["runtime.powerState"] == "poweredOn"
    assert vms["u1"][0]["disk_bytes"][0] == 20 * 1024**3
    assert image_factory.hits == {}
    # Linked clones need a snapshot, which this template lacks.
    linked = {**data, "linked_clone": True}
    ctx2 = context(provider, machine_request("u2", provider_data=linked), owner)
    with pytest.raises(InvalidRequest) as caught:
        provision(provider, [ctx2], clock)
    assert caught.value.field == "provider_data.linked_clone"


def test_linked_clone_of_an_imported_template_and_two_networks(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    data = {"cluster": "DC0_C0", "linked_clone": True, "network": ["VM Network", "DC0_DVPG0"]}
    ctx = context(provider, machine_request("l1", provider_data=data), owner)
    provision(provider, [ctx], clock)
    vms = all_vms(vcsim)
    assert vms["l1"][0]["runtime.powerState"] == "poweredOn"
    assert nic_networks(vcsim, "l1") == ["VM Network", portgroup_key(vcsim, "DC0_DVPG0")]


def test_provider_data_validation() -> None:
    from pydantic import ValidationError

    from talprov.vmware.data import VSphereMachineData

    assert VSphereMachineData.model_validate({"network": "VM Network"}).network == ("VM Network",)
    assert VSphereMachineData().wanted_disk_gib == 20
    assert VSphereMachineData(linked_clone=True).wanted_disk_gib is None
    with pytest.raises(ValidationError):
        VSphereMachineData(linked_clone=True, disk_size=40)
    with pytest.raises(ValidationError):
        VSphereMachineData(memory=1024)
    with pytest.raises(ValidationError):
        VSphereMachineData.model_validate({"tags": ["x"]})

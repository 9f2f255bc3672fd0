"""End to end on the rig: IPMI (ipmi_sim) → QEMU → iPXE → our boot server → busybox "Talos".

Driven by the real reconciler and store. These tests need root and Debian
packages; without them they fail (never skip), naming what is missing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BmcInfo, MachineStatus
from talprov.baremetal.provider import BareMetalProvider
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.talos.schematic import Schematic
from tests.emulators.baremetal.rig import Rig, RigUnavailable, rig
from tests.helpers import CANARY_CONFIG, WORKER_CONFIG

pytestmark = pytest.mark.slow

VERSION = "v1.13.9"


def make_request(rid: str, **fields: object) -> MachineRequest:
    return MachineRequest(id=rid, provider="bm", talos_version=VERSION,
                          machine_config=SecretStr(WORKER_CONFIG), **fields)


@pytest.fixture
def the_rig(tmp_path: Path) -> Iterator[Rig]:
    schematic_id = Schematic.from_request(make_request("x")).id()
    try:
        with rig(tmp_path, schematic_id, VERSION) as r:
            yield r
    except RigUnavailable as exc:
        pytest.fail(f"bare-metal rig unavailable: {exc}")


class Harness:
    def __init__(self, the_rig: Rig, tmp_path: Path) -> None:
        self.rig = the_rig
        self.store = Store(f"sqlite:///{tmp_path / 'state.db'}")
        self.store.migrate()
        runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
        body = {k: v for k, v in the_rig.provider_block.items() if k != "type"}
        self.provider = BareMetalProvider("bm", BareMetalConfig.model_validate(body), runtime)
        self.reconciler = Reconciler(self.store, {"bm": ProviderHandle(self.provider, 4)},
                                     runtime, policy=StepPolicy(max_attempts=3))

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        ok = self.reconciler.run_until(predicate, timeout=timeout, interval=0.3)
        if not ok:
            records = {r.request.id: (r.stage, r.step_name, r.error)
                       for r in self.store.list_requests(include_gone=True)}
            serial = {vm.name: vm.serial()[-1500:] for vm in self.rig.vms}
            pytest.fail(f"timed out: {records}\nboot log:\n{self.rig.boot_log()[-3000:]}\n"
                        f"serials: {serial}")

    def stage(self, rid: str) -> Stage:
        record = self.store.get_request(rid)
        assert record is not None
        return record.stage


def test_provision_fetch_once_and_wipe(the_rig: Rig, tmp_path: Path) -> None:
    vm = the_rig.add_vm("node-a")
    h = Harness(the_rig, tmp_path)
    h.store.create_request(make_request("req-a"))
    started = time.monotonic()
    h.run_until(lambda: h.stage("req-a") in (Stage.PROVISIONED, Stage.FAILED), timeout=90)
    record = h.store.get_request("req-a")
    assert record is not None
    assert record.stage == Stage.PROVISIONED, record.error
    assert record.machine_uuid == vm.uuid
    assert record.infra_id == "node-a"
    provision_seconds = time.monotonic() - started

    # The chain really ran: IPMI set PXE and powered on, iPXE asked with its UUID and MAC,
    # fetched kernel and initramfs, the initramfs fetched its config.
    chassis = vm.chassis_log()
    assert any("set boot pxe" in line for line in chassis)
    assert any("power on boot=pxe" in line for line in chassis)
    log = the_rig.boot_log()
    assert re.search(rf"GET /boot\.ipxe\?uuid={vm.uuid}&mac={vm.mac}", log, re.I), log[-2000:]
    assert "/assets/" in log
    assert "kernel-amd64" in log
    assert "initramfs-amd64.xz" in log
    assert f"/config/{vm.uuid}/***" in log
    assert vm.wait_serial("rig-init: config fetched")
    audit = [(a.event, a.machine) for a in the_rig.inventory.audit()]
    assert ("install-script", "node-a") in audit
    assert ("config-fetched", "node-a") in audit
    machine = the_rig.inventory.get("node-a")
    assert machine is not None
    assert machine.status == MachineStatus.PROVISIONED

    # A second fetch of that config URL, or one for another UUID, is refused and audited.
    refused_before = sum(1 for a in the_rig.inventory.audit() if a.event == "config-refused")
    status, body = the_rig.http_get(f"/config/{vm.uuid}/not-the-token")
    assert status == 403
    assert CANARY_CONFIG.encode() not in body
    status, body = the_rig.http_get("/config/11111111-2222-3333-4444-555555555555/x")
    assert status == 403
    refused = [a for a in the_rig.inventory.audit() if a.event == "config-refused"]
    assert len(refused) == refused_before + 2
    # The installed machine is sent to its disk on its next PXE boot.
    status, body = the_rig.http_get(f"/boot.ipxe?uuid={vm.uuid}&mac={vm.mac}")
    assert status == 200
    assert b"exit" in body
    assert b"kernel" not in body
    assert CANARY_CONFIG not in log

    # Delete: wipe boot, then power off, machine available again.
    h.store.request_deletion("req-a")
    h.run_until(lambda: h.stage("req-a") == Stage.GONE, timeout=90)
    # init prints this only when the kernel got talos.experimental.wipe=system.
    assert vm.wait_serial("rig-init: wiping system")
    wipe_events = [(a.event, a.machine) for a in the_rig.inventory.audit()]
    assert ("wipe-script", "node-a") in wipe_events
    assert ("wipe-reported", "node-a") in wipe_events  # with the wipe script's token
    assert not vm.powered()
    machine = the_rig.inventory.get("node-a")
    assert machine is not None
    assert machine.status == MachineStatus.AVAILABLE
    assert machine.request_id is None
    chassis = vm.chassis_log()
    wipe_on = max(i for i, line in enumerate(chassis) if "power on boot=pxe" in line)
    assert wipe_on > 1  # a second PXE boot: the wipe
    # Our power-off stopped the still-running wipe image ("power off" = QEMU was running).
    assert any(line.endswith("set power 0") for line in chassis[wipe_on:])
    assert chassis[-1].endswith("power off")
    print(f"provisioned in {provision_seconds:.1f}s")


def test_two_machines_in_parallel_and_unknown_mac(the_rig: Rig, tmp_path: Path) -> None:
    vms = [the_rig.add_vm("node-a"), the_rig.add_vm("node-b")]
    stranger = the_rig.add_vm("stranger", enrol=False)
    h = Harness(the_rig, tmp_path)
    for rid in ("req-1", "req-2"):
        h.store.create_request(make_request(rid))
    # The unknown machine PXE-boots on its own (someone pressed its power button).
    from talprov.baremetal.power.base import BootDevice
    from talprov.baremetal.power.ipmi import IpmiPower

    bmc = IpmiPower("127.0.0.1", "admin", stranger.password, port=stranger.bmc_port)
    bmc.set_next_boot(BootDevice.PXE)
    bmc.power_on()
    h.run_until(lambda: all(h.stage(r) in (Stage.PROVISIONED, Stage.FAILED)
                            for r in ("req-1", "req-2")), timeout=120)
    records = [h.store.get_request(r) for r in ("req-1", "req-2")]
    assert all(r is not None and r.stage == Stage.PROVISIONED for r in records)
    assert sorted(str(r.machine_uuid) for r in records if r) == sorted(vm.uuid for vm in vms)
    assert len({r.infra_id for r in records if r}) == 2

    inventory = the_rig.inventory
    found = inventory.find(stranger.uuid, stranger.mac)
    assert found is not None
    assert found.status == MachineStatus.DISCOVERED
    events = [a for a in inventory.audit() if a.machine == found.name]
    assert [a.event for a in events][:1] == ["discovered"]
    assert not any(a.event == "config-fetched" for a in events)
    assert "rig-init" not in stranger.serial()  # never got a kernel
    # Discovered machines are not allocated until accepted.
    assert found.request_id is None


def test_wrong_bmc_credentials_fail_fast(the_rig: Rig, tmp_path: Path) -> None:
    vm = the_rig.add_vm("node-a", enrol=False)
    the_rig.inventory.add("node-a", uuid=vm.uuid, macs=[vm.mac],
                          bmc=BmcInfo(kind="ipmi", address="127.0.0.1", port=vm.bmc_port,
                                      username="admin", password_ref="wrong-password-123"))
    h = Harness(the_rig, tmp_path)
    h.store.create_request(make_request("req-x"))
    started = time.monotonic()
    h.run_until(lambda: h.stage("req-x") == Stage.FAILED, timeout=30)
    record = h.store.get_request("req-x")
    assert record is not None
    assert record.error is not None
    assert "refused the credentials" in record.error
    assert "wrong-password-123" not in record.error
    assert time.monotonic() - started < 10
    assert not vm.powered()
    # Deleting the failed request gives the untouched machine back without a wipe.
    h.store.request_deletion("req-x")
    h.run_until(lambda: h.stage("req-x") == Stage.GONE, timeout=30)
    machine = the_rig.inventory.get("node-a")
    assert machine is not None
    assert machine.status == MachineStatus.AVAILABLE

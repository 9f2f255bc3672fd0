"""The simulator's CloneVM_Task gives each clone disks of its own, as vCenter does.

govmomi 0.24.2 (Debian's) handed the clone the source VM's own device objects
(govmomi issue 2706, fixed upstream by copying the device list): every clone then
re-pointed the source's disk, and every earlier clone's, at the newest clone's
VMDK, leaving the earlier clones' VMDKs referenced by nothing. The chaos suite
counted that as a leaked disk of a live request. tests/emulators/vcsim/
clone_devices.patch makes the simulator copy the devices.

It also replaced a disk wholesale on an edit: a clone spec that grows the
source's disk (an edit of the source's device, its backing naming the source's
VMDK, as talprov and cluster-api-provider-vsphere send it) left the clone's disk
backed by the template's VMDK and the clone's own VMDK referenced by nothing.
vCenter applies such an edit to the clone's own disk; disk_edit.patch does too.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from talprov.vmware import sdk
from tests.emulators.vcsim.fixture import VcsimServer


def _disks(vm: Any) -> list[str]:
    return [str(d.backing.fileName) for d in _disk_devices(vm)]


def _disk_devices(vm: Any) -> list[Any]:
    vim = sdk.vim()
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def _clone(source: Any, name: str, config: Any = None) -> Any:
    from pyVim import task as pyvim_task

    vim = sdk.vim()
    wait_for_task: Any = pyvim_task.WaitForTask
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool),
                            template=False, powerOn=False, config=config)
    task = source.CloneVM_Task(source.parent, name, spec)
    wait_for_task(task)
    return task.info.result


@pytest.fixture
def sample_vm(vcsim: VcsimServer) -> Iterator[Any]:
    """vcsim's sample VM DC0_C0_RP0_VM0, through a logged-in session."""
    from pyVim import connect

    vim = sdk.vim()
    smart_connect: Any = connect.SmartConnect
    si = smart_connect(host="127.0.0.1", port=vcsim.port, user=vcsim.user, pwd=vcsim.password,
                       sslContext=ssl.create_default_context(cafile=str(vcsim.ca_file)))
    try:
        content = si.content
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.VirtualMachine], True)
        yield next(vm for vm in view.view if vm.name == "DC0_C0_RP0_VM0")
        view.Destroy()
    finally:
        si.content.sessionManager.Logout()


def test_each_clone_keeps_its_own_disk_and_the_source_keeps_its_own(sample_vm: Any) -> None:
    source_disks = _disks(sample_vm)
    assert source_disks, "the sample VM has a disk to clone"

    first = _clone(sample_vm, "first")
    second = _clone(sample_vm, "second")

    assert _disks(sample_vm) == source_disks
    assert _disks(first) == ["[LocalDS_0] first/first.vmdk"]
    assert _disks(second) == ["[LocalDS_0] second/second.vmdk"]


def test_a_clone_spec_that_grows_the_source_disk_grows_the_clones_own(sample_vm: Any) -> None:
    vim = sdk.vim()
    disk = copy.copy(_disk_devices(sample_vm)[0])
    disk.capacityInKB = disk.capacityInKB + 1024 * 1024
    disk.capacityInBytes = disk.capacityInKB * 1024
    grow = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=disk)])

    clone = _clone(sample_vm, "grown", grow)

    assert _disks(clone) == ["[LocalDS_0] grown/grown.vmdk"]
    assert _disk_devices(clone)[0].capacityInKB == disk.capacityInKB

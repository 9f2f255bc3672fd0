"""The simulator's CloneVM_Task gives each clone disks of its own, as vCenter does.

govmomi 0.24.2 (Debian's) handed the clone the source VM's own device objects
(govmomi issue 2706, fixed upstream by copying the device list): every clone then
re-pointed the source's disk, and every earlier clone's, at the newest clone's
VMDK, leaving the earlier clones' VMDKs referenced by nothing. The chaos suite
counted that as a leaked disk of a live request. tests/emulators/vcsim/
clone_devices.patch makes the simulator copy the devices.
"""

from __future__ import annotations

import ssl
from typing import Any

from talprov.vmware import sdk
from tests.emulators.vcsim.fixture import VcsimServer


def _disks(vm: Any) -> list[str]:
    vim = sdk.vim()
    return [str(d.backing.fileName) for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)]


def test_each_clone_keeps_its_own_disk_and_the_source_keeps_its_own(
        vcsim: VcsimServer) -> None:
    from pyVim import connect
    from pyVim import task as pyvim_task

    vim = sdk.vim()
    smart_connect: Any = connect.SmartConnect
    wait_for_task: Any = pyvim_task.WaitForTask
    si = smart_connect(host="127.0.0.1", port=vcsim.port, user=vcsim.user, pwd=vcsim.password,
                       sslContext=ssl.create_default_context(cafile=str(vcsim.ca_file)))
    try:
        content = si.content
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.VirtualMachine], True)
        source = next(vm for vm in view.view if vm.name == "DC0_C0_RP0_VM0")
        view.Destroy()
        source_disks = _disks(source)
        assert source_disks, "the sample VM has a disk to clone"
        clones = {}
        for name in ("first", "second"):
            spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool),
                                    template=False, powerOn=False)
            task = source.CloneVM_Task(source.parent, name, spec)
            wait_for_task(task)
            clones[name] = task.info.result

        assert _disks(source) == source_disks
        assert _disks(clones["first"]) == ["[LocalDS_0] first/first.vmdk"]
        assert _disks(clones["second"]) == ["[LocalDS_0] second/second.vmdk"]
    finally:
        si.content.sessionManager.Logout()

"""An independent look into vcsim with plain pyvmomi (not through the driver under test)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from talprov.vmware import sdk
from talprov.vmware.machines import disk_bytes
from tests.emulators.vcsim.fixture import VcsimServer

VM_PATHS = ["name", "config.template", "config.extraConfig", "config.hardware",
            "config.instanceUuid", "config.uuid", "runtime.powerState"]


@contextmanager
def connect(server: VcsimServer) -> Iterator[Any]:
    """A pyvmomi ServiceInstance logged in to ``server`` (TLS verified)."""
    from pyVim import connect as pyvim_connect

    smart_connect: Any = pyvim_connect.SmartConnect
    context = ssl.create_default_context(cafile=str(server.ca_file))
    si = smart_connect(host="127.0.0.1", port=server.port, user=server.user,
                       pwd=server.password, sslContext=context)
    try:
        yield si
    finally:
        si.content.sessionManager.Logout()


def all_vms(server: VcsimServer) -> dict[str, list[dict[str, Any]]]:
    """Every VM's properties, grouped by VM name (duplicates show up as longer lists)."""
    from pyVmomi import vim

    found: dict[str, list[dict[str, Any]]] = {}
    with connect(server) as si:
        content = si.content
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.VirtualMachine], True)
        try:
            for vm in view.view:
                props: dict[str, Any] = {"moid": vm._moId, "vm": None}
                for path in VM_PATHS:
                    value: Any = vm
                    for part in path.split("."):
                        value = getattr(value, part)
                    props[path] = value
                props["extra"] = {o.key: str(o.value) for o in props["config.extraConfig"]}
                disks = [d for d in props["config.hardware"].device
                         if isinstance(d, vim.vm.device.VirtualDisk)]
                props["disk_bytes"] = [disk_bytes(d) for d in disks]
                found.setdefault(str(props["name"]), []).append(props)
        finally:
            view.Destroy()
    return found


def _wait(task: Any) -> None:
    from pyVim import task as pyvim_task

    wait_for_task: Any = pyvim_task.WaitForTask
    wait_for_task(task)


def _find(si: Any, name: str) -> Any:
    from pyVmomi import vim

    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(v for v in view.view if v.name == name)
    finally:
        view.Destroy()


def power_on_out_of_band(server: VcsimServer, name: str) -> None:
    """Power the VM called ``name`` on behind talprov's back."""
    with connect(server) as si:
        _wait(_find(si, name).PowerOnVM_Task())


def power_off_out_of_band(server: VcsimServer, name: str) -> None:
    """Power the VM called ``name`` off behind talprov's back."""
    with connect(server) as si:
        _wait(_find(si, name).PowerOffVM_Task())


def destroy_out_of_band(server: VcsimServer, name: str) -> None:
    """Power off and destroy the VM called ``name`` behind talprov's back."""
    with connect(server) as si:
        vm = _find(si, name)
        if vm.runtime.powerState == "poweredOn":
            _wait(vm.PowerOffVM_Task())
        _wait(vm.Destroy_Task())


def terminate_sessions_of(server: VcsimServer, keep: str | None = None) -> int:
    """End every session but this observer's own; returns how many were ended."""
    with connect(server) as si:
        manager = si.content.sessionManager
        mine = manager.currentSession.key
        others = [s.key for s in manager.sessionList or () if s.key not in (mine, keep)]
        if others:
            manager.TerminateSession(others)
        return len(others)


def clone_out_of_band(server: VcsimServer, source: str, name: str,
                      extra: dict[str, str], template: bool = False) -> None:
    """Clone VM ``source`` as ``name`` with ``extra`` in its extraConfig (another writer)."""
    vim = sdk.vim()
    with connect(server) as si:
        vm = _find(si, source)
        config = vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key=k, value=v) for k, v in extra.items()])
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=vm.resourcePool),
                                config=config, template=template)
        _wait(vm.CloneVM_Task(vm.parent, name, spec))


def set_extra_config_out_of_band(server: VcsimServer, name: str, extra: dict[str, str]) -> None:
    """Set ``extra`` in the extraConfig of VM ``name`` behind talprov's back."""
    vim = sdk.vim()
    with connect(server) as si:
        _wait(_find(si, name).ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key=k, value=v) for k, v in extra.items()])))


def nic_networks(server: VcsimServer, name: str) -> list[str]:
    """The network (or distributed port group key) of each NIC of VM ``name``, in order."""
    vim = sdk.vim()
    with connect(server) as si:
        vm = _find(si, name)
        found = []
        for device in vm.config.hardware.device:
            if isinstance(device, vim.vm.device.VirtualEthernetCard):
                port = getattr(device.backing, "port", None)
                found.append(port.portgroupKey if port is not None
                             else device.backing.deviceName)
        return found


def portgroup_key(server: VcsimServer, name: str) -> str:
    from pyVmomi import vim

    with connect(server) as si:
        content = si.content
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.dvs.DistributedVirtualPortgroup], True)
        try:
            return str(next(p.key for p in view.view if p.name == name))
        finally:
            view.Destroy()

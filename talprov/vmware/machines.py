"""The VM talprov clones for a request, and how a listed VM reads back as a Machine.

The clone spec carries the whole configuration (vCenter applies it during the
clone); ``configure_spec`` compares a VM with what the request wants and returns
the reconfiguration still needed, so a VM from a clone that ignored parts of the
spec (or was changed since) is brought in line before it is powered on.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Mapping
from typing import Any

from talprov.providers.ownership import LABEL_PREFIX, REQUEST_KEY, ownership_tags
from talprov.providers.types import Machine, MachineRequest, MachineState, Owner
from talprov.talos.encoders import guestinfo
from talprov.vmware import sdk
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.inventory import Placement

# A fixed namespace so that instance UUIDs are the same on every talprov host.
INSTANCE_UUID_NAMESPACE = uuid.UUID("1b0d5bd2-3f0c-5c44-9a8e-7c0a6f2d9e17")
GIB = 1024 * 1024 * 1024
LIST_PATHS = ("name", "config.instanceUuid", "config.uuid", "config.extraConfig",
              "config.template", "config.createDate", "runtime.powerState", "guest.net",
              "guest.ipAddress")
#: The sizes ``needs_resize`` compares (scalars: a fraction of ``config.hardware``,
#: whose device list is most of what reading a VM costs talprov in CPU).
SIZE_PATHS = ("config.hardware.numCPU", "config.hardware.memoryMB",
              "config.hardware.numCoresPerSocket")


def instance_uuid(owner: Owner, request_id: str) -> str:
    """The vCenter instance UUID of a request's VM: the same every time it is computed.

    Set in the clone spec, so a VM cloned before a crash is found again by it.
    """
    return str(uuid.uuid5(INSTANCE_UUID_NAMESPACE,
                          f"{owner.installation}/{owner.instance}/{request_id}"))


def extra_config(owner: Owner, request: MachineRequest, user_data: str) -> dict[str, str]:
    """The extraConfig talprov sets: guestinfo config, disk UUIDs, ownership marks."""
    values = dict(guestinfo(user_data))
    values["disk.enableUUID"] = "TRUE"
    values.update(ownership_tags(owner, request))
    return values


def _option_values(values: Mapping[str, str]) -> list[Any]:
    vim = sdk.vim()

    return [vim.option.OptionValue(key=k, value=v) for k, v in sorted(values.items())]


def _disks(devices: list[Any]) -> list[Any]:
    vim = sdk.vim()

    return [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]


def disk_bytes(disk: Any) -> int:
    """A virtual disk's size (older APIs fill only ``capacityInKB``)."""
    return max(int(disk.capacityInBytes or 0), int(disk.capacityInKB or 0) * 1024)


def _nics(devices: list[Any]) -> list[Any]:
    vim = sdk.vim()

    return [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def _backing(network: Any) -> Any:
    vim = sdk.vim()

    if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
        port = vim.dvs.PortConnection(
            portgroupKey=network.key,
            switchUuid=network.config.distributedVirtualSwitch.uuid,
        )
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
        deviceName=network.name, network=network)


def _attached(nic: Any, network: Any) -> bool:
    backing = nic.backing
    port = getattr(backing, "port", None)
    if port is not None:
        return bool(getattr(network, "key", None) == port.portgroupKey)
    return bool(getattr(backing, "network", None) == network
                or getattr(backing, "deviceName", None) == network.name)


def device_changes(devices: list[Any], data: VSphereMachineData,
                   networks: tuple[Any, ...]) -> list[Any]:
    """Disk growth and NIC backings still needed for ``devices`` to match the request.

    Leaves ``devices`` as they are (an edited device is a copy), so a template's
    device list read once can serve every clone.
    """
    vim = sdk.vim()

    op = vim.vm.device.VirtualDeviceSpec.Operation
    changes = []
    wanted = data.wanted_disk_gib
    disks = _disks(devices)
    if wanted is not None and disks and disk_bytes(disks[0]) < wanted * GIB:
        disk = copy.copy(disks[0])
        disk.capacityInBytes = wanted * GIB
        disk.capacityInKB = wanted * GIB // 1024
        changes.append(vim.vm.device.VirtualDeviceSpec(operation=op.edit, device=disk))
    nics = _nics(devices)
    for index, network in enumerate(networks):
        if index < len(nics):
            if not _attached(nics[index], network):
                nic = copy.copy(nics[index])
                nic.backing = _backing(network)
                changes.append(vim.vm.device.VirtualDeviceSpec(operation=op.edit, device=nic))
            continue
        nic = vim.vm.device.VirtualVmxnet3(
            key=-(index + 1), backing=_backing(network),
            connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                startConnected=True, allowGuestControl=True, connected=False),
        )
        changes.append(vim.vm.device.VirtualDeviceSpec(operation=op.add, device=nic))
    return changes


def config_spec(data: VSphereMachineData, extra: Mapping[str, str], devices: list[Any],
                networks: tuple[Any, ...], instance: str | None = None,
                policy_id: str | None = None) -> Any:
    """A ConfigSpec that gives a VM with ``devices`` the request's hardware and extraConfig."""
    vim = sdk.vim()

    spec = vim.vm.ConfigSpec(
        numCPUs=data.cpu, memoryMB=data.memory, extraConfig=_option_values(extra),
        deviceChange=device_changes(devices, data, networks),
    )
    if data.cores_per_socket is not None:
        spec.numCoresPerSocket = data.cores_per_socket
    if instance is not None:
        spec.instanceUuid = instance
    if policy_id is not None:
        spec.vmProfile = [vim.vm.DefinedProfileSpec(profileId=policy_id)]
    return spec


def clone_spec(template: Any, devices: list[Any], data: VSphereMachineData, place: Placement,
               extra: Mapping[str, str], instance: str) -> Any:
    """The CloneSpec for the request's VM (powered off; power-on is its own step).

    ``devices`` are the template's (``config.hardware.device``); not changed.
    """
    vim = sdk.vim()

    location = vim.vm.RelocateSpec(pool=place.pool)
    if place.datastore is not None:
        location.datastore = place.datastore
    snapshot = None
    if data.linked_clone:
        if template.snapshot is None or template.snapshot.currentSnapshot is None:
            from talprov.providers.errors import InvalidRequest

            raise InvalidRequest("linked_clone needs a template with a snapshot",
                                 field="provider_data.linked_clone")
        snapshot = template.snapshot.currentSnapshot
        location.diskMoveType = "createNewChildDiskBacking"
    return vim.vm.CloneSpec(
        location=location, template=False, powerOn=False, snapshot=snapshot,
        config=config_spec(data, extra, devices, place.networks, instance,
                           data.storage_policy_id),
    )


def _sizes_match(cpus: Any, memory_mb: Any, cores_per_socket: Any,
                 data: VSphereMachineData) -> bool:
    if cpus != data.cpu or memory_mb != data.memory:
        return False
    return data.cores_per_socket is None or cores_per_socket == data.cores_per_socket


def needs_reconfigure(props: Mapping[str, Any], data: VSphereMachineData,
                      extra: Mapping[str, str], networks: tuple[Any, ...]) -> Any | None:
    """The ConfigSpec still needed for a VM read with ``props``, or None when it matches.

    ``props`` holds ``config.hardware`` and ``config.extraConfig``.
    """
    hardware = props["config.hardware"]
    have = {o.key: str(o.value) for o in props.get("config.extraConfig") or ()}
    missing = {k: v for k, v in extra.items() if have.get(k) != v}
    devices = list(hardware.device)
    changes = device_changes(devices, data, networks)
    cpu_ok = _sizes_match(hardware.numCPU, hardware.memoryMB, hardware.numCoresPerSocket, data)
    if cpu_ok and not missing and not changes:
        return None
    return config_spec(data, missing, devices, networks)


def needs_resize(props: Mapping[str, Any], data: VSphereMachineData) -> Any | None:
    """The ConfigSpec of CPUs and memory still needed for a VM read with
    ``SIZE_PATHS``, or None when they match.

    For a VM whose clone task (talprov's, with ``clone_spec``) succeeded: the
    clone applied the spec's extraConfig and device changes (vCenter applies a
    CloneSpec's ``config``; so does vcsim, which however keeps the source's CPU
    and memory sizes), so only the sizes are compared. A property vCenter leaves
    out (vcsim omits a zero) reads as None.
    """
    if _sizes_match(props.get("config.hardware.numCPU"), props.get("config.hardware.memoryMB"),
                    props.get("config.hardware.numCoresPerSocket"), data):
        return None
    return _resize_spec(data.cpu, data.memory, data.cores_per_socket)


@functools.lru_cache(maxsize=64)
def _resize_spec(cpus: int, memory_mb: int, cores_per_socket: int | None) -> Any:
    """A ConfigSpec of these sizes, made once and shared by every VM that needs them
    (pyVmomi only reads a spec to send it; making one costs ~0.15 ms of CPU).

    Shared across worker threads: a caller must never change the spec it gets
    (copy it first), or another VM's reconfigure would carry the change."""
    vim = sdk.vim()

    spec = vim.vm.ConfigSpec(numCPUs=cpus, memoryMB=memory_mb)
    if cores_per_socket is not None:
        spec.numCoresPerSocket = cores_per_socket
    return spec


def marks_of(props: Mapping[str, Any]) -> dict[str, str]:
    """The talprov ownership marks in a VM's extraConfig."""
    return {o.key: str(o.value) for o in props.get("config.extraConfig") or ()
            if o.key.startswith("talprov-")}


def machine_state(props: Mapping[str, Any]) -> MachineState:
    power = str(props.get("runtime.powerState", ""))
    return {"poweredOn": MachineState.RUNNING, "poweredOff": MachineState.STOPPED,
            "suspended": MachineState.STOPPED}.get(power, MachineState.UNKNOWN)


def addresses(props: Mapping[str, Any]) -> tuple[str, ...]:
    """The guest's IP addresses as VMware Tools reports them (link-local left out)."""
    found: list[str] = []
    for nic in props.get("guest.net") or ():
        for ip in nic.ipAddress or ():
            if ip and not ip.startswith("fe80:") and ip not in found:
                found.append(ip)
    primary = props.get("guest.ipAddress")
    if primary and primary not in found:
        found.insert(0, primary)
    return tuple(found)


def machine_from_props(moid: str, props: Mapping[str, Any]) -> Machine:
    """A listed VM as a talprov Machine (``infra_id`` is its managed object id)."""
    marks = marks_of(props)
    labels = {k[len(LABEL_PREFIX):]: v for k, v in marks.items() if k.startswith(LABEL_PREFIX)}
    return Machine(
        infra_id=moid, state=machine_state(props), request_id=marks.get(REQUEST_KEY),
        machine_uuid=props.get("config.uuid"), addresses=addresses(props), labels=labels,
        created_at=props.get("config.createDate"),
        extra={"name": str(props.get("name", "")),
               "instance_uuid": str(props.get("config.instanceUuid", ""))},
    )

"""The VM talprov creates for a request, and how a listed VM reads back as a Machine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from talprov.providers.ownership import LABEL_PREFIX, REQUEST_KEY
from talprov.providers.types import Machine, MachineRequest, MachineState
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.tags import UUID_KEY

#: Drive slots: the Talos ISO and the seed ISO on IDE (CD-ROMs work on IDE with
#: both machine types), disks on virtio-scsi-single (one controller per disk).
BOOT_CDROM = "ide2"
SEED_CDROM = "ide3"
SYSTEM_DISK = "scsi0"


def create_params(
    *,
    vmid: int,
    request: MachineRequest,
    data: ProxmoxMachineData,
    storage: str,
    iso_volume: str,
    seed_volume: str,
    machine_uuid: str,
    mac: str,
    tags: Sequence[str],
    description: str,
) -> dict[str, Any]:
    """The body of ``POST /nodes/{node}/qemu`` for the request's VM."""
    net = f"virtio={mac},bridge={data.bridge}"
    if data.vlan is not None:
        net += f",tag={data.vlan}"
    params: dict[str, Any] = {
        "vmid": vmid,
        "name": request.id,
        "description": description,
        "ostype": "l26",
        "machine": data.machine,
        "cpu": data.cpu_type,
        "cores": data.cores,
        "sockets": data.sockets,
        "memory": data.memory,
        # Talos has no balloon driver use; fixed memory avoids surprises.
        "balloon": 0,
        "scsihw": "virtio-scsi-single",
        SYSTEM_DISK: f"{storage}:{data.disk_size},iothread=1,discard=on",
        BOOT_CDROM: f"{iso_volume},media=cdrom",
        SEED_CDROM: f"{seed_volume},media=cdrom",
        # The disk first: empty on the first boot, so firmware falls through to
        # the ISO; once Talos is installed the VM boots from disk.
        "boot": f"order={SYSTEM_DISK};{BOOT_CDROM}",
        "net0": net,
        "serial0": "socket",
        "agent": "enabled=1",
        "smbios1": f"uuid={machine_uuid}",
        "tags": ";".join(tags),
        "onboot": 1 if data.start_on_boot else 0,
    }
    for index, disk in enumerate(data.additional_disks, start=1):
        params[f"scsi{index}"] = f"{disk.storage or storage}:{disk.size},iothread=1,discard=on"
    if data.pool is not None:
        params["pool"] = data.pool
    return params


def machine_state(item: Mapping[str, Any]) -> MachineState:
    """A ``/cluster/resources`` VM entry's state, normalised."""
    if item.get("lock") in ("create", "clone"):
        return MachineState.PENDING
    status = item.get("status")
    if status == "running":
        return MachineState.RUNNING
    if status == "stopped":
        return MachineState.STOPPED
    return MachineState.UNKNOWN


def machine_from_resource(item: Mapping[str, Any], marks: Mapping[str, str]) -> Machine:
    """A ``/cluster/resources`` VM entry as a talprov Machine (``infra_id`` is the VMID)."""
    labels = {k[len(LABEL_PREFIX):]: v for k, v in marks.items() if k.startswith(LABEL_PREFIX)}
    return Machine(
        infra_id=str(item["vmid"]),
        state=machine_state(item),
        request_id=marks.get(REQUEST_KEY),
        machine_uuid=marks.get(UUID_KEY),
        labels=labels,
        extra={"node": str(item.get("node", "")), "name": str(item.get("name", ""))},
    )

"""The VM talprov creates for a request, and how a listed VM reads back as a Machine."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from talprov.providers.ownership import LABEL_PREFIX
from talprov.providers.types import Machine, MachineRequest, MachineState
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.tags import UUID_KEY, listed_request_id

# A fixed namespace so that machine UUIDs are the same on every talprov host.
MACHINE_UUID_NAMESPACE = uuid.UUID("6f1c4e0a-8f5e-5b8e-9c57-3c1b7f0d2a41")

#: Drive slots: the Talos ISO and the seed ISO on IDE (CD-ROMs work on IDE with
#: both machine types), disks on virtio-scsi-single (one controller per disk).
BOOT_CDROM = "ide2"
SEED_CDROM = "ide3"
SYSTEM_DISK = "scsi0"


def machine_uuid(installation: str, instance: str, request_id: str) -> str:
    """The SMBIOS UUID of a request's VM: the same every time it is computed.

    Deterministic so that a VM created before a crash is recognisable (and so
    that the UUID is known before the VM exists).
    """
    return str(uuid.uuid5(MACHINE_UUID_NAMESPACE, f"{installation}/{instance}/{request_id}"))


def mac_address(machine_uuid_text: str) -> str:
    """A stable, locally administered MAC for net0, so network-config can match it."""
    digest = hashlib.sha256(machine_uuid_text.encode()).digest()
    return ":".join(f"{b:02X}" for b in (0x02, *digest[:5]))


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
    """A ``/cluster/resources`` VM entry as a talprov Machine (``infra_id`` is the VMID;
    ``request_id`` the request's id also on a VM an older version tagged with its
    digest, see :func:`~talprov.proxmox.tags.listed_request_id`)."""
    labels = {k[len(LABEL_PREFIX):]: v for k, v in marks.items() if k.startswith(LABEL_PREFIX)}
    return Machine(
        infra_id=str(item["vmid"]),
        state=machine_state(item),
        request_id=listed_request_id(marks, item.get("name")),
        machine_uuid=marks.get(UUID_KEY),
        labels=labels,
        extra={"node": str(item.get("node", "")), "name": str(item.get("name", ""))},
    )

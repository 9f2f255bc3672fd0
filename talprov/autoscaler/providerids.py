"""Kubernetes ``spec.providerID`` of talprov machines, per platform. Pure functions.

The formats are those the platforms' cloud controllers (and Talos's own platform
code) put on a node:

* AWS (Talos, cloud-provider-aws): ``aws:///<availability-zone>/<instance-id>``
* OpenStack (Talos, cloud-provider-openstack): ``openstack:///<server-uuid>``
* vSphere (cloud-provider-vsphere): ``vsphere://<bios-uuid>``
* Proxmox (proxmox-cloud-controller-manager): ``proxmox://<region>/<vmid>``, the
  region being the cluster name in that controller's config (talprov assumes the
  provider instance name unless the service's ``proxmox_regions`` says otherwise)

A machine with no platform id yet (still being created) is named
``talprov://<request-id>``: the autoscaler sees it as not yet registered, and
may hand that id back in ``NodeGroupDeleteNodes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PLACEHOLDER_SCHEME = "talprov://"


@dataclass(frozen=True)
class MachineIds:
    """What identifies one machine: its request, platform ids, and where it runs."""

    request_id: str
    provider_type: str
    provider_instance: str
    infra_id: str | None
    machine_uuid: str | None
    zone: str | None


def provider_id(machine: MachineIds, proxmox_regions: Mapping[str, str]) -> str:
    """The providerID the machine's node gets, or the ``talprov://`` placeholder
    while the platform id (or, on AWS, the zone) is not known yet."""
    kind, infra = machine.provider_type, machine.infra_id
    if kind == "aws" and infra and machine.zone:
        return f"aws:///{machine.zone}/{infra}"
    if kind == "openstack" and infra:
        return f"openstack:///{infra}"
    if kind == "vmware" and machine.machine_uuid:
        return f"vsphere://{machine.machine_uuid.lower()}"
    if kind == "proxmox" and infra:
        region = proxmox_regions.get(machine.provider_instance, machine.provider_instance)
        return f"proxmox://{region}/{infra}"
    return f"{PLACEHOLDER_SCHEME}{machine.request_id}"


def matches(node_provider_id: str, machine: MachineIds,
            proxmox_regions: Mapping[str, str]) -> bool:
    """Whether a node's providerID names ``machine``. Case-insensitive for vSphere's
    UUIDs; an AWS id matches on the instance id whatever zone it names."""
    wanted = node_provider_id.strip()
    if not wanted:
        return False
    if wanted == f"{PLACEHOLDER_SCHEME}{machine.request_id}":
        return True
    if machine.provider_type == "aws" and wanted.startswith("aws://") and machine.infra_id:
        return wanted.rsplit("/", 1)[-1] == machine.infra_id
    if machine.provider_type == "vmware":
        return wanted.lower() == provider_id(machine, proxmox_regions).lower()
    return wanted == provider_id(machine, proxmox_regions)

"""The Proxmox ``provider_data`` of a MachineRequest (exported as JSON Schema).

Everything here describes the VM talprov creates for a request: its size, where
it goes (node, storages, pool), its network, and optionally a static address
that reaches Talos as nocloud ``network-config``.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from pydantic import BaseModel, ConfigDict, Field, field_validator

# PVE tags: letters, digits and _ + . - (it lower-cases them).
TAG_PATTERN = r"^[a-z0-9_][a-z0-9_+.-]*$"
# A storage id or node name as PVE accepts them.
PVE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]*$"
ISO_VOLUME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*:iso/[^/\s]+\.(iso|img)$")
MAX_USER_TAGS = 16


class AdditionalDisk(BaseModel):
    """An extra data disk (scsi1, scsi2, ... in order)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int = Field(ge=1, le=65536, description="Size in GiB.")
    storage: str | None = Field(
        default=None,
        pattern=PVE_ID_PATTERN,
        description="Storage for this disk; unset = the storage of the system disk.",
    )


class StaticNetwork(BaseModel):
    """Static addressing of the first NIC, delivered as nocloud network-config (v2)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    addresses: tuple[IPv4Interface | IPv6Interface, ...] = Field(
        min_length=1, description="Addresses with prefix length, e.g. 192.0.2.10/24."
    )
    gateway4: IPv4Address | None = Field(default=None, description="IPv4 default gateway.")
    gateway6: IPv6Address | None = Field(default=None, description="IPv6 default gateway.")
    dns_servers: tuple[IPv4Address | IPv6Address, ...] = Field(
        default=(), description="DNS resolvers."
    )
    search_domains: tuple[str, ...] = Field(default=(), description="DNS search domains.")
    mtu: int | None = Field(default=None, ge=576, le=9216, description="Link MTU.")


class ProxmoxMachineData(BaseModel):
    """The shape and placement of one Proxmox VM."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cores: int = Field(default=2, ge=1, le=512, description="CPU cores per socket.")
    sockets: int = Field(default=1, ge=1, le=8, description="CPU sockets.")
    memory: int = Field(
        default=4096, ge=2048, le=4 * 1024 * 1024,
        description="Memory in MiB (Talos needs at least 2048).",
    )
    disk_size: int = Field(default=20, ge=10, le=65536, description="System disk size in GiB.")
    storage: str | None = Field(
        default=None,
        pattern=PVE_ID_PATTERN,
        description="Storage of the system disk. Unset: the active storage with the most "
        "free space among the instance's allowed_storages that holds VM images.",
    )
    iso_storage: str | None = Field(
        default=None,
        pattern=PVE_ID_PATTERN,
        description="Storage (content 'iso') for the Talos ISO and the cloud-init seed "
        "ISO. Unset: the instance's iso_storage.",
    )
    node: str | None = Field(
        default=None,
        pattern=PVE_ID_PATTERN,
        description="Node to create the VM on. Unset: among allowed_nodes, the node with "
        "the fewest VMs of the same set (label talprov.request-set, else talprov.set), "
        "then the most free memory.",
    )
    allowed_nodes: tuple[str, ...] = Field(
        default=(),
        description="Nodes to choose from when node is unset; empty = the instance's "
        "allowed_nodes.",
    )
    bridge: str = Field(default="vmbr0", pattern=PVE_ID_PATTERN, description="Bridge of net0.")
    vlan: int | None = Field(default=None, ge=1, le=4094, description="VLAN tag of net0.")
    cpu_type: str = Field(
        default="x86-64-v2-AES", pattern=r"^[A-Za-z0-9_.+-]+$", description="QEMU CPU type."
    )
    machine: str = Field(
        default="q35", pattern=r"^(q35|pc)(-[0-9.]+)?(\+pve\d+)?$",
        description="QEMU machine type.",
    )
    additional_disks: tuple[AdditionalDisk, ...] = Field(
        default=(), max_length=29, description="Extra data disks, attached as scsi1, scsi2, ..."
    )
    tags: tuple[str, ...] = Field(
        default=(), max_length=MAX_USER_TAGS,
        description="Extra PVE tags (lower case letters, digits, _ + . -).",
    )
    pool: str | None = Field(
        default=None, pattern=PVE_ID_PATTERN, description="Resource pool to add the VM to."
    )
    static_network: StaticNetwork | None = Field(
        default=None,
        description="Static addresses, gateway and DNS for net0; unset = DHCP.",
    )
    iso: str | None = Field(
        default=None,
        description="An ISO volume already on a storage (storage:iso/name.iso) to boot "
        "instead of downloading the factory nocloud ISO.",
    )
    start_on_boot: bool = Field(
        default=True, description="Start the VM when its node boots (PVE 'onboot')."
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not re.match(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must match {TAG_PATTERN}")
            if tag.startswith("talprov"):
                raise ValueError(f"tag {tag!r}: the talprov prefix is reserved")
        return tags

    @field_validator("iso")
    @classmethod
    def _check_iso(cls, value: str | None) -> str | None:
        if value is not None and not ISO_VOLUME_PATTERN.match(value):
            raise ValueError("expected a volume id like local:iso/talos.iso")
        return value

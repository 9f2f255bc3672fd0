"""The OpenStack ``provider_data`` of a MachineRequest.

provider_data describes the machine's shape: flavor (or a minimum size), where
it plugs into the network, which zones it may land in, its server group, root
volume, floating IP, config drive, metadata and tags, or an existing image.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Nova and Neutron allow 50 tags per resource; talprov's own take four.
MAX_USER_TAGS = 40
TAG_PATTERN = r"^[^,/]{1,60}$"


class FixedIp(BaseModel):
    """One fixed address of a port: a subnet, an address, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    subnet: str | None = Field(default=None, description="Subnet name or id.")
    ip_address: str | None = Field(default=None, description="The address to take.")

    @model_validator(mode="after")
    def _something(self) -> FixedIp:
        if self.subnet is None and self.ip_address is None:
            raise ValueError("give subnet, ip_address or both")
        return self


class PortSpec(BaseModel):
    """A port talprov creates (and tags) for the machine."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    network: str = Field(min_length=1, description="Network name or id.")
    fixed_ips: list[FixedIp] = Field(default_factory=list, description="Fixed addresses; "
                                     "empty = one address from the network's first subnet.")
    security_groups: list[str] | None = Field(
        default=None, description="Security group names or ids for this port; unset = the "
        "request's security_groups (or the project's default group).")


class RootVolume(BaseModel):
    """Boot from a Cinder volume made from the image instead of the flavor's local disk."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int = Field(ge=1, le=65536, description="Size in GiB.")
    type: str | None = Field(default=None, description="Volume type; unset = the default.")
    delete_on_termination: bool = Field(default=True, description="Delete with the server.")


class OpenStackData(BaseModel):
    """Per-request machine shape on OpenStack."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    flavor: str | None = Field(
        default=None, description="Flavor name or id. Set this, or cpu + memory + disk.")
    cpu: int | None = Field(default=None, ge=1, description="Minimum vCPUs (no flavor).")
    memory: int | None = Field(default=None, ge=1, description="Minimum RAM in MiB (no flavor).")
    disk: int | None = Field(default=None, ge=0, description="Minimum root disk in GiB "
                             "(no flavor); 0 accepts any.")
    networks: list[str] = Field(default_factory=list, description="Network names or ids; one "
                                "port is created (and tagged) on each.")
    ports: list[PortSpec] = Field(default_factory=list, description="Explicit ports (fixed "
                                  "IPs, security groups) instead of networks.")
    security_groups: list[str] = Field(default_factory=list, description="Security group "
                                       "names or ids for every port; empty = the default group.")
    availability_zone: list[str] = Field(
        default_factory=list,
        description="Zones the machine may land in. A request starts in one picked from its "
        "id (so a set spreads) and falls back to the next on NoValidHost. Empty = Nova "
        "chooses.")
    server_group: str | None = Field(
        default=None, description="Server group name; created once (with server_group_policy) "
        "and reused by every request that names it.")
    server_group_policy: Literal["anti-affinity", "soft-anti-affinity", "affinity",
                                 "soft-affinity"] = Field(
        default="anti-affinity", description="Policy of a server group talprov creates.")
    root_volume: RootVolume | None = Field(default=None, description="Boot from volume.")
    floating_ip_pool: str | None = Field(
        default=None, description="External network to take a floating IP from for the "
        "first port; unset = no floating IP.")
    config_drive: bool = Field(default=False, description="Also deliver user_data on a "
                               "config drive.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Extra server "
                                     "metadata (keys and values up to 255 characters).")
    tags: list[str] = Field(default_factory=list, max_length=MAX_USER_TAGS,
                            description="Extra server tags (no ',' or '/', up to 60 chars).")
    image: str | None = Field(
        default=None, description="An existing Glance image (name or id) to boot, skipping "
        "the Image Factory upload.")

    @field_validator("availability_zone", mode="before")
    @classmethod
    def _zone_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not 1 <= len(tag) <= 60 or "," in tag or "/" in tag:
                raise ValueError(f"tag {tag!r}: 1-60 characters, no ',' or '/'")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not 1 <= len(key) <= 255 or len(item) > 255:
                raise ValueError(f"metadata {key!r}: keys 1-255, values up to 255 characters")
            if key.startswith("talprov-"):
                raise ValueError(f"metadata {key!r}: the talprov- prefix is reserved")
        return value

    @model_validator(mode="after")
    def _shape(self) -> OpenStackData:
        sized = [self.cpu, self.memory, self.disk]
        if self.flavor is not None and any(v is not None for v in sized):
            raise ValueError("give flavor or cpu+memory+disk, not both")
        if self.flavor is None and any(v is None for v in sized):
            raise ValueError("give flavor, or all of cpu, memory and disk")
        if self.networks and self.ports:
            raise ValueError("give networks or ports, not both")
        if not self.networks and not self.ports:
            raise ValueError("give networks or ports: the machine needs a network")
        return self

    def port_specs(self) -> list[PortSpec]:
        """The ports to create, one per network when only networks are given."""
        if self.ports:
            return list(self.ports)
        return [PortSpec(network=n) for n in self.networks]

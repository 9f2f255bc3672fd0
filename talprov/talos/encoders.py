"""Per-channel encodings of the text a machine boots with (its "user data").

* raw user data (EC2 user-data, OpenStack user_data): the UTF-8 bytes;
* VMware guestinfo: ``guestinfo.talos.config`` holding base64 of the config, and
  ``guestinfo.talos.config.encoding: base64``, set as VM extraConfig;
* nocloud (Proxmox cloud-init drive, ISO): ``user-data``, ``meta-data``
  (``instance-id``, ``local-hostname``) and ``network-config``. Talos's nocloud
  platform reads network-config versions 1 and 2; talprov writes version 2
  (netplan style: ``ethernets`` matched by MAC or named, ``addresses`` in CIDR,
  ``gateway4``/``gateway6``, ``nameservers.addresses``).

The user data holds secrets; none of these functions log or echo it.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from talprov.providers.errors import InvalidRequest

GUESTINFO_CONFIG = "guestinfo.talos.config"
GUESTINFO_ENCODING = "guestinfo.talos.config.encoding"
MAC_PATTERN = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"


class StaticNetwork(BaseModel):
    """A static address plan for one interface (``mac`` or ``interface`` picks it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = Field(min_length=1)
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    mac: str | None = Field(default=None, pattern=MAC_PATTERN)
    interface: str = Field(default="eth0", pattern=r"^[A-Za-z0-9_.:-]{1,15}$")

    @model_validator(mode="after")
    def _gateway_reachable(self) -> StaticNetwork:
        # A gateway of a family with no address on the interface cannot be routed to.
        if self.gateway is not None and all(
            a.version != self.gateway.version for a in self.addresses
        ):
            raise ValueError("gateway has no address of its IP version on the interface")
        return self


def raw_user_data(text: str, limit: int | None = None) -> bytes:
    """The user data as bytes; raises ``InvalidRequest`` when longer than ``limit`` bytes."""
    data = text.encode("utf-8")
    if limit is not None and len(data) > limit:
        raise InvalidRequest(
            f"the machine configuration is {len(data)} bytes; the platform takes at most {limit}",
            field="machine_config",
        )
    return data


def guestinfo(text: str) -> dict[str, str]:
    """VMware extraConfig entries carrying the user data (base64)."""
    return {
        GUESTINFO_CONFIG: base64.b64encode(text.encode("utf-8")).decode("ascii"),
        GUESTINFO_ENCODING: "base64",
    }


def user_data(text: str) -> bytes:
    """The nocloud ``user-data`` file: Talos takes the machine config as is."""
    return raw_user_data(text)


def meta_data(instance_id: str, hostname: str | None = None) -> bytes:
    """The nocloud ``meta-data`` file."""
    body: dict[str, str] = {"instance-id": instance_id}
    if hostname:
        body["local-hostname"] = hostname
    return yaml.safe_dump(body, sort_keys=False).encode()


def network_config(static: StaticNetwork | None) -> bytes | None:
    """The nocloud ``network-config`` file (version 2), or None to leave it out (DHCP)."""
    if static is None:
        return None
    ethernet: dict[str, Any] = {}
    if static.mac:
        ethernet["match"] = {"macaddress": static.mac.lower()}
    ethernet["addresses"] = [str(address) for address in static.addresses]
    if static.gateway is not None:
        ethernet["gateway4" if static.gateway.version == 4 else "gateway6"] = str(static.gateway)
    if static.dns:
        ethernet["nameservers"] = {"addresses": [str(server) for server in static.dns]}
    body = {"version": 2, "ethernets": {static.interface: ethernet}}
    return yaml.safe_dump(body, sort_keys=False).encode()

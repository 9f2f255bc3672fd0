"""The inventory's records: machine states, BMC details, boot plans, audit entries."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from talprov.errors import pattern_in_words
from talprov.providers.types import REQUEST_ID_PATTERN

#: Machine names become a request's infra id and show up next to request ids: the
#: same DNS-label rule.
MACHINE_NAME_PATTERN = REQUEST_ID_PATTERN
# The SMBIOS system UUID as Talos prints it (go-smbios through google/uuid) and iPXE
# sends it as ${uuid}: 8-4-4-4-12 hex digits.
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class MachineStatus(StrEnum):
    """Where a machine is in its life (``cordoned`` is a separate flag)."""

    DISCOVERED = "discovered"  # PXE-booted unasked; waits for `accept`
    AVAILABLE = "available"
    ALLOCATED = "allocated"  # held by a request, installing
    PROVISIONED = "provisioned"  # installed: boots from disk
    WIPING = "wiping"  # released: boots the wipe image, then powers off


@dataclass(frozen=True)
class BootPlan:
    """What the boot script gives a machine: kernel, initramfs, command line.

    The command line never contains the config URL's token: the boot server adds
    a fresh one each time it renders the script. It may contain Omni join
    arguments, so it is never logged.
    """

    kernel_url: str
    initramfs_url: str
    cmdline: tuple[str, ...]
    with_config: bool = True

    def to_json(self) -> str:
        return json.dumps({"kernel_url": self.kernel_url, "initramfs_url": self.initramfs_url,
                           "cmdline": list(self.cmdline), "with_config": self.with_config})

    @classmethod
    def from_json(cls, text: str) -> BootPlan:
        raw = json.loads(text)
        return cls(raw["kernel_url"], raw["initramfs_url"], tuple(raw["cmdline"]),
                   bool(raw.get("with_config", True)))


@dataclass(frozen=True)
class BmcInfo:
    """How to reach a machine's BMC. ``password_ref`` is a secret reference or literal."""

    kind: str = "ipmi"
    address: str = ""
    port: int | None = None
    username: str = ""
    password_ref: str = ""
    verify_tls: bool = True

    def __repr__(self) -> str:
        return f"BmcInfo({self.kind} {self.address}:{self.port})"

    def url(self) -> str:
        """The BMC as ``--bmc`` takes it (``ipmi://HOST[:PORT]``, ``redfish://...``,
        ``redfish+http://...`` for a plain-HTTP Redfish), "" when none is known
        (a discovered machine). No user or password. Pure."""
        if not self.address:
            return ""
        if self.address.startswith("http://"):
            return f"redfish+http://{self.address.removeprefix('http://')}"
        return f"{self.kind}://{self.address}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class InventoryMachine:
    """One row of the inventory, as read."""

    name: str
    uuid: str | None
    macs: tuple[str, ...]
    bmc: BmcInfo
    labels: Mapping[str, str]
    cpus: int | None
    memory_mib: int | None
    disk_gb: int | None
    status: MachineStatus
    cordoned: bool
    request_id: str | None
    owner: str | None
    boot: BootPlan | None
    has_config: bool
    script_fetched_at: float | None
    kernel_fetched_at: float | None
    config_fetched_at: float | None
    wipe_started_at: float | None
    wipe_reported_at: float | None
    last_seen_at: float | None
    #: Why talprov cordoned it ("" when a person did, or when it is not cordoned).
    cordon_reason: str = ""

    def public_view(self) -> dict[str, Any]:
        """The machine as it may be shown (no config, no password)."""
        return {
            "name": self.name, "uuid": self.uuid, "macs": list(self.macs),
            "state": "cordoned" if self.cordoned and self.request_id is None
            else str(self.status),
            "cordoned": self.cordoned, "cordon_reason": self.cordon_reason,
            "request": self.request_id,
            "bmc": self.bmc.url(),
            "labels": dict(self.labels), "cpus": self.cpus, "memory_mib": self.memory_mib,
            "disk_gb": self.disk_gb,
        }


@dataclass(frozen=True)
class AuditEntry:
    at: float
    event: str
    machine: str | None
    uuid: str | None
    mac: str | None
    remote: str | None
    detail: str


def normalize_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` from any common spelling (dashes, upper case)."""
    digits = mac.replace("-", "").replace(":", "").replace(".", "").lower()
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def canonical_uuid(text: str) -> str:
    """``text`` as Talos reports an SMBIOS UUID: lower-case 8-4-4-4-12 hex digits (BMCs
    often print upper case). Raises ``ValueError`` naming ``text`` for anything else
    (no dashes, braces, a digit short). Pure."""
    lowered = text.strip().lower()
    if not _CANONICAL_UUID.fullmatch(lowered):
        raise ValueError(f"{text!r} is not an SMBIOS UUID: write 8-4-4-4-12 hex digits, "
                         "e.g. 4c4c4544-0051-3810-8057-b7c04f4e3332")
    return lowered


def uuid_or_none(text: str | None) -> str | None:
    """``text`` as :func:`canonical_uuid` writes it, or None for none and for text
    that rule refuses: what a booting machine or a report sends is looked up and
    recorded only as a UUID, never as it came (it would match no enrolled machine).
    Pure; never raises."""
    try:
        return canonical_uuid(text) if text else None
    except ValueError:
        return None


def check_machine_name(name: str) -> str:
    """``name`` when it follows the machine name rule (that of request ids); raises
    ``ValueError`` saying the rule in words. Pure."""
    if not re.fullmatch(MACHINE_NAME_PATTERN, name):
        raise ValueError(f"the machine name {name!r} {pattern_in_words(MACHINE_NAME_PATTERN)}")
    return name


#: Every audit event the boot server and the inventory record, besides the
#: ``report-<event>`` ones a booting machine sends (``audit --event`` checks
#: against these; tests/unit/baremetal/test_cli_operator.py keeps it complete).
AUDIT_EVENTS = (
    "discovered", "install-script", "wipe-script", "local-disk", "script-without-dhcp",
    "config-fetched", "config-refused", "config-refetch", "config-wrong-address",
    "wipe-reported", "wipe-report-refused", "wipe-timeout", "released",
)

"""Which file the Image Factory serves for a platform, architecture and boot kind.

Names follow Talos's ``pkg/machinery/platforms`` (the factory uses the same
helpers): ``<platform>-<arch>.<suffix>`` for disk images, ``<platform>-<arch>.iso``
for ISOs, a ``-secureboot`` infix for the secure boot variant (only on platforms
that support it: metal and nocloud), ``kernel-<arch>`` and ``initramfs-<arch>.xz``
for any platform, and ``<platform>-<arch>[-secureboot]`` for the iPXE script
under ``/pxe/``. Drivers pick from this table instead of building strings, and
every driver's architecture and secure boot check is this table's.

The table follows Talos's ``pkg/machinery/platforms/platforms.go`` at the tag of
each supported minor line (v1.10.9, v1.11.0, v1.11.1, v1.11.6, v1.12.11,
v1.13.9; v1.9 has no such file and gets v1.10's table, which the factory served
then): the five platforms talprov uses have the same suffixes and architectures
on every line, except ``vmware`` arm64 (``vmware-arm64.ova``), listed from
v1.11.1 on. Metal's secure boot flag is set in that file only from v1.12, but the
factory built metal secure boot assets long before (metal is handled apart from
the cloud platforms there), so it counts for every line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import TALOS_VERSION_PATTERN, Arch, MachineRequest
from talprov.talos.versions import TalosVersion, parse_version

SCHEMATIC_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(TALOS_VERSION_PATTERN)


class Platform(StrEnum):
    AWS = "aws"
    VMWARE = "vmware"
    OPENSTACK = "openstack"
    NOCLOUD = "nocloud"
    METAL = "metal"


class AssetKind(StrEnum):
    DISK = "disk"  # the platform's disk image (raw.xz, ova, ...)
    ISO = "iso"
    KERNEL = "kernel"
    INITRAMFS = "initramfs"


@dataclass(frozen=True)
class PlatformInfo:
    """What the factory offers for one platform."""

    platform: Platform
    disk_suffix: str
    archs: tuple[Arch, ...]
    secure_boot: bool
    #: The asset a driver boots from by default on this platform.
    default_kind: AssetKind
    #: The first Talos release offering an architecture, for those not offered from the start.
    arch_since: Mapping[Arch, tuple[int, int, int]] = field(default_factory=dict)

    def offers(self, arch: Arch, version: TalosVersion) -> bool:
        """Whether the factory builds this platform's assets for ``arch`` at ``version``."""
        return arch in self.archs and version.at_least(*self.arch_since.get(arch, (0, 0, 0)))


PLATFORMS: dict[Platform, PlatformInfo] = {
    Platform.AWS: PlatformInfo(
        Platform.AWS, "raw.xz", (Arch.AMD64, Arch.ARM64), False, AssetKind.DISK
    ),
    Platform.VMWARE: PlatformInfo(
        Platform.VMWARE, "ova", (Arch.AMD64, Arch.ARM64), False, AssetKind.DISK,
        arch_since={Arch.ARM64: (1, 11, 1)},
    ),
    Platform.OPENSTACK: PlatformInfo(
        Platform.OPENSTACK, "raw.xz", (Arch.AMD64, Arch.ARM64), False, AssetKind.DISK
    ),
    Platform.NOCLOUD: PlatformInfo(
        Platform.NOCLOUD, "raw.xz", (Arch.AMD64, Arch.ARM64), True, AssetKind.ISO
    ),
    # Talos 1.8+ serves metal disks as raw.zst; talprov boots metal by ISO or PXE.
    Platform.METAL: PlatformInfo(
        Platform.METAL, "raw.zst", (Arch.AMD64, Arch.ARM64), True, AssetKind.ISO
    ),
}


def _check(platform: Platform, arch: Arch, secure_boot: bool, version: str) -> PlatformInfo:
    info = PLATFORMS[Platform(platform)]
    if not info.offers(Arch(arch), parse_version(version)):
        raise InvalidRequest(
            f"the Image Factory has no {platform} image for {arch} at Talos {version}"
            + _since(info, Arch(arch)), field="arch")
    if secure_boot and not info.secure_boot:
        raise InvalidRequest(
            f"the Image Factory has no secure boot image for {platform}", field="secure_boot"
        )
    return info


def require_offered(platform: Platform, request: MachineRequest) -> None:
    """Refuse a request the Image Factory has no ``platform`` image for: its arch at
    its Talos version (``InvalidRequest`` at ``arch``) or secure boot (at
    ``secure_boot``). A driver's pre-flight check: pure, no factory call."""
    _check(platform, request.arch, request.secure_boot, request.talos_version)


def _since(info: PlatformInfo, arch: Arch) -> str:
    first = info.arch_since.get(arch)
    return f" (offered from v{first[0]}.{first[1]}.{first[2]})" if first else ""


def asset_name(
    platform: Platform, arch: Arch, version: str, kind: AssetKind | None = None, *,
    secure_boot: bool = False,
) -> str:
    """The file name the factory serves under ``/image/<id>/<version>/``.

    ``kind`` defaults to the platform's usual boot asset. Raises ``InvalidRequest``
    for an architecture or secure boot variant the platform does not have at
    ``version``, or a malformed version.
    """
    info = _check(platform, arch, secure_boot, version)
    kind = info.default_kind if kind is None else AssetKind(kind)
    infix = "-secureboot" if secure_boot else ""
    if kind is AssetKind.DISK:
        return f"{info.platform}-{arch}{infix}.{info.disk_suffix}"
    if kind is AssetKind.ISO:
        return f"{info.platform}-{arch}{infix}.iso"
    if secure_boot:
        # Secure boot machines boot a signed UKI; the plain kernel/initramfs do not apply.
        raise InvalidRequest(
            "secure boot machines do not boot a separate kernel", field="secure_boot"
        )
    if kind is AssetKind.KERNEL:
        return f"kernel-{arch}"
    return f"initramfs-{arch}.xz"


def pxe_script_name(arch: Arch, version: str, *, secure_boot: bool = False) -> str:
    """The iPXE script name under ``/pxe/<id>/<version>/`` (metal platform)."""
    _check(Platform.METAL, arch, secure_boot, version)
    return f"metal-{arch}" + ("-secureboot" if secure_boot else "")


def check_ids(schematic_id: str, version: str) -> None:
    """Refuse ids and versions that are not what they claim (they end up in URL paths)."""
    if not SCHEMATIC_ID_PATTERN.fullmatch(schematic_id):
        raise InvalidRequest("not a schematic id (64 lowercase hex digits)", field="schematic")
    if not _VERSION.fullmatch(version):
        raise InvalidRequest("not a Talos version like v1.13.9", field="talos_version")

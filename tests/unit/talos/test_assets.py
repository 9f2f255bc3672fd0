"""The per-version platform table (Talos's pkg/machinery/platforms/platforms.go per tag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Arch
from talprov.talos.assets import PLATFORMS, AssetKind, Platform, asset_name, pxe_script_name
from talprov.talos.factory import ImageFactory

SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


# platforms.go lists vmware as amd64-only at v1.10.9 and v1.11.0, and amd64+arm64 from
# v1.11.1 (still so at v1.12.11 and v1.13.9). Before this table, arm64 was always refused.
@pytest.mark.parametrize(("version", "offered"), [
    ("v1.9.6", False), ("v1.10.9", False), ("v1.11.0", False), ("v1.11.1", True),
    ("v1.11.5", True), ("v1.12.11", True), ("v1.13.9", True), ("v1.14.0", True),
])
def test_vmware_arm64_is_offered_from_talos_1_11_1(
        version: str, offered: bool, tmp_path: Path) -> None:
    factory = ImageFactory("https://factory.example.test", tmp_path)
    if offered:
        assert factory.image_url(SCHEMATIC, version, Platform.VMWARE, "arm64").endswith(
            f"/image/{SCHEMATIC}/{version}/vmware-arm64.ova")
    else:
        with pytest.raises(InvalidRequest) as caught:
            factory.image_url(SCHEMATIC, version, Platform.VMWARE, "arm64")
        assert caught.value.field == "arch"
        assert "v1.11.1" in str(caught.value)


@pytest.mark.parametrize("platform", list(Platform))
@pytest.mark.parametrize("version", ["v1.9.6", "v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9"])
def test_every_platform_offers_amd64_on_every_supported_line(
        platform: Platform, version: str) -> None:
    info = PLATFORMS[platform]
    name = asset_name(platform, Arch.AMD64, version, AssetKind.DISK)
    assert name == f"{platform}-amd64.{info.disk_suffix}"


def test_the_pxe_script_and_metal_assets_follow_the_same_table() -> None:
    assert pxe_script_name(Arch.ARM64, "v1.13.9", secure_boot=True) == "metal-arm64-secureboot"
    with pytest.raises(InvalidRequest) as caught:
        asset_name(Platform.AWS, Arch.AMD64, "v1.13.09")
    assert caught.value.field == "talos_version"

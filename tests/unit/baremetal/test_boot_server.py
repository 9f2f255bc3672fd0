"""The boot server over real sockets on 127.0.0.1: HTTP decisions, TFTP, DHCP replies."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest

from talprov.baremetal.boot import dhcp
from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.boot.ipxe import install_plan, wipe_plan
from talprov.baremetal.boot.tftp import TftpServer
from talprov.baremetal.config import BareMetalConfig, DhcpConfig
from talprov.baremetal.inventory import BmcInfo, Inventory, MachineStatus
from talprov.providers.types import Arch, JoinSpec, MachineRequest
from tests.emulators.baremetal.rig import free_udp_port
from tests.emulators.factory import EMPTY_SCHEMATIC_ID, FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture

UUID = "6b4a1c2d-0000-4000-8000-00000000000a"
MAC = "52:54:00:12:34:56"
SID = "a" * 64


def config(tmp_path: Path, **extra: object) -> BareMetalConfig:
    return BareMetalConfig.model_validate({
        "inventory": str(tmp_path / "inv.sqlite"), "boot_url": "http://127.0.0.1:1",
        "mirror_dir": str(tmp_path / "mirror"), **extra})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Inventory, BareMetalConfig]]:
    cfg = config(tmp_path)
    inventory = Inventory(cfg.inventory)
    inventory.add("m0", uuid=UUID, macs=[MAC], bmc=BmcInfo())
    assets = tmp_path / "mirror" / SID / "v1.13.9"
    assets.mkdir(parents=True)
    (assets / "kernel-amd64").write_bytes(b"K" * 5000)
    server = HttpBootServer(BootHttp(cfg, inventory, "https://factory.invalid"), "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", inventory, cfg
    finally:
        server.stop()


def allocate(inventory: Inventory, cfg: BareMetalConfig, join: JoinSpec | None = None) -> None:
    request = MachineRequest(id="req", provider="bm", talos_version="v1.13.9",
                             kernel_args=("net.ifnames=0",), join=join)
    inventory.allocate("req", "o", ["m0"])
    plan = install_plan(cfg, request, f"{cfg.boot_url}/assets/{SID}/v1.13.9/kernel-amd64",
                        f"{cfg.boot_url}/assets/{SID}/v1.13.9/initramfs-amd64.xz")
    inventory.set_install("m0", "req", plan, "the-config")


def test_unknown_machine_is_discovered_and_gets_no_kernel(served: tuple[str, Inventory,
                                                                        BareMetalConfig]) -> None:
    base, inventory, _ = served
    reply = httpx.get(f"{base}/boot.ipxe", params={"uuid": "11111111-2222-4333-8444-555555555555",
                                                   "mac": "52:54:00:99:99:99"})
    assert reply.status_code == 200
    assert "kernel" not in reply.text
    assert "exit" in reply.text
    found = inventory.find(None, "52:54:00:99:99:99")
    assert found is not None
    assert found.status == MachineStatus.DISCOVERED
    assert [a.event for a in inventory.audit()] == ["discovered"]


def test_chain_script_asks_again_with_uuid_and_mac(served: tuple[str, Inventory,
                                                                 BareMetalConfig]) -> None:
    base, _, _ = served
    text = httpx.get(f"{base}/boot.ipxe").text
    assert text.startswith("#!ipxe")
    assert "uuid=${uuid}&mac=${net0/mac}" in text


def test_install_script_then_config_once(served: tuple[str, Inventory, BareMetalConfig]) -> None:
    base, inventory, cfg = served
    join = JoinSpec(api_url="https://omni.example/?jointoken=sekrit-join", mode="kernel_args")
    allocate(inventory, cfg, join)
    script = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID.upper(), "mac": MAC}).text
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    for arg in ("talos.platform=metal", "console=ttyS0,115200n8", "net.ifnames=0",
                "siderolink.api=https://omni.example/?jointoken=sekrit-join",
                f"kernel-amd64?uuid={UUID}", "initrd=initramfs.xz"):
        assert arg in kernel_line
    config_url = next(a for a in kernel_line.split() if a.startswith("talos.config="))
    path = config_url.split("=", 1)[1].replace(cfg.boot_url, "")
    assert path.startswith(f"/config/{UUID}/")
    first = httpx.get(base + path)
    assert first.status_code == 200
    assert first.text == "the-config"
    assert httpx.get(base + path).status_code == 403
    other = path.replace(UUID, "6b4a1c2d-0000-4000-8000-00000000000b")
    assert httpx.get(base + other).status_code == 403
    events = [a.event for a in inventory.audit()]
    assert events.count("config-refused") == 2
    assert events.count("config-fetched") == 1
    # Installed: the next PXE boot goes to disk.
    again = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
    assert "kernel" not in again
    assert "exit" in again


def test_a_new_boot_script_invalidates_the_old_token(
        served: tuple[str, Inventory, BareMetalConfig]) -> None:
    base, inventory, cfg = served
    allocate(inventory, cfg)

    def config_path() -> str:
        script = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
        url = next(a for a in script.split() if a.startswith("talos.config="))
        return url.split("=", 1)[1].replace(cfg.boot_url, "")

    old, new = config_path(), config_path()
    assert httpx.get(base + old).status_code == 403
    assert httpx.get(base + new).status_code == 200


def test_wipe_script_and_assets(served: tuple[str, Inventory, BareMetalConfig]) -> None:
    base, inventory, cfg = served
    allocate(inventory, cfg)
    inventory.start_wipe("m0", "req", wipe_plan(cfg, f"{cfg.boot_url}/assets/{SID}/v1.13.9/"
                                                "kernel-amd64", "http://x/initramfs-amd64.xz",
                                                "v1.13.9", Arch.AMD64))
    script = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID, "mac": MAC}).text
    assert "talos.experimental.wipe=system" in script
    assert "talos.config" not in script
    report_url = next(a for a in script.split() if a.startswith("talprov.wipe_report="))
    report_path = report_url.split("=", 1)[1].replace(cfg.boot_url, "")
    kernel = httpx.get(f"{base}/assets/{SID}/v1.13.9/kernel-amd64", params={"uuid": UUID})
    assert kernel.status_code == 200
    assert kernel.content == b"K" * 5000
    machine = inventory.get("m0")
    assert machine is not None
    assert machine.kernel_fetched_at is not None
    assert httpx.get(f"{base}/assets/{SID}/v1.13.9/../../etc").status_code == 404
    assert httpx.get(f"{base}/assets/{SID}/v1.13.9/initramfs-amd64.xz").status_code == 404
    # Anyone else saying "wiped" is refused: it would return an unwiped machine early.
    assert httpx.get(f"{base}/wiped/{UUID}/guessed-token").status_code == 403
    assert httpx.get(f"{base}/report/{UUID}", params={"event": "wiped"}).status_code == 200
    machine = inventory.get("m0")
    assert machine is not None
    assert machine.wipe_reported_at is None
    assert httpx.get(base + report_path).status_code == 200
    machine = inventory.get("m0")
    assert machine is not None
    assert machine.wipe_reported_at is not None
    events = [a.event for a in inventory.audit()]
    assert events.count("wipe-report-refused") == 1
    assert events.count("wipe-reported") == 1


def test_tftp_serves_ipxe_binaries(tmp_path: Path) -> None:
    import tftpy

    root = tmp_path / "ipxe"
    root.mkdir()
    (root / "undionly.kpxe").write_bytes(bytes(range(256)) * 300)
    port = free_udp_port()
    server = TftpServer(root, "127.0.0.1", port)
    server.start()
    try:
        client = tftpy.TftpClient("127.0.0.1", port)
        client.download("undionly.kpxe", str(tmp_path / "got"), timeout=5)
    finally:
        server.stop()
    assert (tmp_path / "got").read_bytes() == (root / "undionly.kpxe").read_bytes()


def pxe_packet(kind: int, *, ipxe: bool = False, pxe: bool = True, arch: int = 0) -> bytes:
    header = struct.pack("!BBBB4sHH4s4s4s4s16s64s128s", 1, 1, 6, 0, b"\x01\x02\x03\x04", 0,
                         0x8000, b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                         bytes.fromhex("525400123456").ljust(16, b"\0"), b"", b"")
    opts = bytes([53, 1, kind])
    if pxe:
        vendor = b"PXEClient:Arch:00000:UNDI:002001"
        opts += bytes([60, len(vendor)]) + vendor + bytes([93, 2]) + arch.to_bytes(2, "big")
    if ipxe:
        opts += bytes([77, 4]) + b"iPXE"
    return header + dhcp.MAGIC + opts + b"\xff"


def test_proxy_dhcp_answers_pxe_only_without_an_address() -> None:
    responder = dhcp.DhcpResponder(DhcpConfig(interface_address=IPv4Address("10.0.0.5")),
                                   "http://10.0.0.5:8081")
    assert responder.reply(dhcp.parse(pxe_packet(dhcp.DISCOVER, pxe=False)) or _no(), False) is None
    answer = dhcp.parse(responder.reply(dhcp.parse(pxe_packet(dhcp.DISCOVER)) or _no(), False)
                        or b"")
    assert answer is not None
    assert answer.message_type == dhcp.OFFER
    raw = responder.reply(dhcp.parse(pxe_packet(dhcp.DISCOVER)) or _no(), False) or b""
    assert raw[16:20] == b"\0\0\0\0"  # yiaddr: a proxy never hands out addresses
    assert answer.options[dhcp.OPT_BOOTFILE] == b"undionly.kpxe"
    assert answer.options[dhcp.OPT_CLASS_ID] == b"PXEClient"
    efi = dhcp.parse(responder.reply(dhcp.parse(pxe_packet(dhcp.REQUEST, arch=7)) or _no(), True)
                     or b"")
    assert efi is not None
    assert efi.options[dhcp.OPT_BOOTFILE] == b"ipxe.efi"
    chained = dhcp.parse(responder.reply(dhcp.parse(pxe_packet(dhcp.DISCOVER, ipxe=True))
                                         or _no(), False) or b"")
    assert chained is not None
    assert chained.options[dhcp.OPT_BOOTFILE] == b"http://10.0.0.5:8081/boot.ipxe"


def first_answer(cfg: DhcpConfig, port: int, *packets: bytes) -> bytes:
    """Send ``packets`` over UDP to a responder for ``cfg`` on 127.0.0.1:``port``;
    the first reply."""
    responder = dhcp.DhcpResponder(cfg, "http://10.0.0.5:8081", listen_address="127.0.0.1")
    responder.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(3)
            for packet in packets:
                client.sendto(packet, ("127.0.0.1", port))
            data, _ = client.recvfrom(4096)
            return data
    finally:
        responder.stop()


def test_full_dhcp_leases_from_the_range_over_udp() -> None:
    port = free_udp_port()
    cfg = DhcpConfig(interface_address=IPv4Address("10.0.0.5"), port=port, proxy_port=port + 1,
                     range_start=IPv4Address("10.0.0.100"), range_end=IPv4Address("10.0.0.101"))
    # ciaddr set so the reply comes back by unicast (no broadcast on loopback).
    packet = bytearray(pxe_packet(dhcp.DISCOVER, ipxe=True))
    packet[12:16] = bytes([127, 0, 0, 1])
    data = first_answer(cfg, port, bytes(packet))
    answer = dhcp.parse(data)
    assert answer is not None
    assert answer.message_type == dhcp.OFFER
    assert data[16:20] == IPv4Address("10.0.0.100").packed
    assert answer.options[dhcp.OPT_IPXE_ENCAP] == bytes([176, 1, 1])
    assert answer.options[dhcp.OPT_MASK] == IPv4Address("255.255.255.0").packed


def _no() -> dhcp.Packet:
    raise AssertionError("test packet did not parse")


def test_assets_proxied_from_the_factory(tmp_path: Path, image_factory: FakeImageFactory) -> None:
    base_path = f"/image/{EMPTY_SCHEMATIC_ID}/v1.13.9"
    image_factory.fail_next(f"{base_path}/initramfs-amd64.xz", 404)
    kernel = image_factory.content_for(f"{base_path}/kernel-amd64")
    assert kernel is not None
    cfg = BareMetalConfig.model_validate({"inventory": str(tmp_path / "inv.sqlite"),
                                          "boot_url": "http://127.0.0.1:1",
                                          "proxy_factory": True})
    server = HttpBootServer(BootHttp(cfg, Inventory(cfg.inventory), image_factory.url),
                            "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}/assets/{EMPTY_SCHEMATIC_ID}/v1.13.9"
        assert httpx.get(f"{base}/kernel-amd64").content == kernel[0]
        assert httpx.get(f"{base}/initramfs-amd64.xz").status_code == 502
    finally:
        server.stop()
    assert dict(image_factory.hits) == {f"{base_path}/kernel-amd64": 1,
                                        f"{base_path}/initramfs-amd64.xz": 1}


def test_proxy_port_answers_boot_requests_over_udp() -> None:
    port = free_udp_port()
    cfg = DhcpConfig(interface_address=IPv4Address("10.0.0.5"), port=port + 1, proxy_port=port)
    data = first_answer(cfg, port, pxe_packet(dhcp.DISCOVER, pxe=False),
                        pxe_packet(dhcp.REQUEST, arch=7))
    answer = dhcp.parse(data)
    assert answer is not None
    # Only the PXE request was answered: an ACK with the UEFI boot file and no address.
    assert answer.message_type == dhcp.ACK
    assert answer.options[dhcp.OPT_BOOTFILE] == b"ipxe.efi"
    assert data[16:20] == b"\0\0\0\0"


def test_boot_uuids_are_taken_in_canonical_form_only(
        served: tuple[str, Inventory, BareMetalConfig]) -> None:
    """QA: the boot server took any 32-36 hex digits and dashes as sent, so a UUID
    without dashes was recorded as a discovered machine that never matches an
    enrolled one (stored as canonical_uuid writes it). Upper case is the same UUID;
    what canonical_uuid refuses is no UUID at all."""
    base, inventory, _ = served
    upper = httpx.get(f"{base}/boot.ipxe", params={"uuid": UUID.upper()})
    assert upper.status_code == 200
    assert [a.machine for a in inventory.audit()] == ["m0"]  # found: m0's local-disk line
    undashed = UUID.replace("-", "")
    for uuid in (undashed, "-" * 36, UUID[:-1] + "-"):
        chained = httpx.get(f"{base}/boot.ipxe", params={"uuid": uuid})
        assert chained.status_code == 200
        assert "uuid=${uuid}&mac=${net0/mac}" in chained.text  # asked again, not recorded
    mac_only = httpx.get(f"{base}/boot.ipxe", params={"uuid": undashed,
                                                      "mac": "52:54:00:99:99:98"})
    assert mac_only.status_code == 200
    found = inventory.find(None, "52:54:00:99:99:98")
    assert found is not None
    assert found.uuid is None  # not the undashed text
    assert all(undashed not in (m.uuid or "") and undashed not in m.name
               for m in inventory.machines())
    assert httpx.get(f"{base}/report/{undashed}/booted").status_code == 404

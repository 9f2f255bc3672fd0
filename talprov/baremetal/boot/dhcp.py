"""A small DHCP responder for PXE: proxy by default, a full server only when asked.

Proxy mode (no address range configured) answers only clients that say they are
PXE clients (option 60 ``PXEClient…``), with boot information and no address,
on port 67 and on the PXE boot-server port 4011, next to the site's own DHCP
server. Full mode (``range_start``..``range_end``, configured explicitly) is the
network's DHCP server: it leases addresses to every client and adds boot
information for PXE clients.

Boot files: iPXE (user class ``iPXE``) gets the HTTP boot script URL; firmware
PXE gets an iPXE binary over TFTP by client architecture (option 93), so it
chainloads into iPXE and asks again.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from talprov.baremetal.boot import naming_socket
from talprov.baremetal.boot.binding import DhcpLedger
from talprov.baremetal.config import DhcpConfig

log = logging.getLogger(__name__)

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 5, 6, 7, 8
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_VENDOR = 1, 3, 6, 43
OPT_REQUESTED_IP, OPT_LEASE, OPT_MSG_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_CLASS_ID, OPT_TFTP_SERVER, OPT_BOOTFILE, OPT_USER_CLASS = 60, 66, 67, 77
OPT_CLIENT_ARCH, OPT_CLIENT_UUID, OPT_IPXE_ENCAP, OPT_END = 93, 97, 175, 255
IPXE_NO_PXEDHCP = 176
# PXE vendor option 6 (discovery control) = 8: take the boot file from this
# reply, skip PXE boot-server discovery.
PXE_DISCOVERY_BOOTFILE = b"\x06\x01\x08\xff"
_HEADER = struct.Struct("!BBBB4sHH4s4s4s4s16s64s128s")
#: TFTP boot files by client architecture (RFC 4578 option 93).
BOOT_FILES = {0: "undionly.kpxe", 6: "ipxe.efi", 7: "ipxe.efi", 9: "ipxe.efi"}


@dataclass
class Packet:
    op: int
    xid: bytes
    flags: int
    ciaddr: IPv4Address
    chaddr: bytes
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.chaddr[:6])

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MSG_TYPE)
        return value[0] if value else None

    @property
    def is_pxe(self) -> bool:
        return self.options.get(OPT_CLASS_ID, b"").startswith(b"PXEClient")

    @property
    def is_ipxe(self) -> bool:
        return b"iPXE" in self.options.get(OPT_USER_CLASS, b"")

    @property
    def arch(self) -> int:
        value = self.options.get(OPT_CLIENT_ARCH, b"")
        return int.from_bytes(value[:2], "big") if len(value) >= 2 else 0


def parse(data: bytes) -> Packet | None:
    """A DHCP packet, or None for anything malformed (never raises)."""
    if len(data) < _HEADER.size + 4 or data[_HEADER.size:_HEADER.size + 4] != MAGIC:
        return None
    op, _htype, hlen, _hops, xid, _secs, flags, ciaddr, *_rest = _HEADER.unpack_from(data)
    chaddr = _rest[3]
    options: dict[int, bytes] = {}
    i = _HEADER.size + 4
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            return None
        length = data[i + 1]
        options[code] = data[i + 2:i + 2 + length]
        i += 2 + length
    return Packet(op, xid, flags, IPv4Address(ciaddr), chaddr[:max(6, min(hlen, 16))], options)


def build(request: Packet, message_type: int, yiaddr: IPv4Address, siaddr: IPv4Address,
          bootfile: str, options: dict[int, bytes]) -> bytes:
    header = _HEADER.pack(2, 1, 6, 0, request.xid, 0, request.flags, request.ciaddr.packed,
                          yiaddr.packed, siaddr.packed, b"\0" * 4,
                          request.chaddr.ljust(16, b"\0"), b"", bootfile.encode()[:127])
    body = bytearray(MAGIC)
    body += bytes([OPT_MSG_TYPE, 1, message_type])
    for code, value in options.items():
        body += bytes([code, len(value)]) + value
    body.append(OPT_END)
    return header + bytes(body)


class Leases:
    """Addresses of the configured range, one per MAC, in memory."""

    def __init__(self, start: IPv4Address, end: IPv4Address) -> None:
        self.start, self.end = start, end
        self._by_mac: dict[str, IPv4Address] = {}
        self._lock = threading.Lock()

    def address_for(self, mac: str, wanted: IPv4Address | None = None) -> IPv4Address | None:
        with self._lock:
            if mac in self._by_mac:
                return self._by_mac[mac]
            taken = set(self._by_mac.values())
            if wanted is not None and self.start <= wanted <= self.end and wanted not in taken:
                self._by_mac[mac] = wanted
                return wanted
            candidate = self.start
            while candidate <= self.end:
                if candidate not in taken:
                    self._by_mac[mac] = candidate
                    return candidate
                candidate += 1
            return None


class DhcpResponder:
    """Answers PXE clients; see the module docstring for the two modes."""

    def __init__(self, config: DhcpConfig, boot_url: str, *,
                 listen_address: str = "0.0.0.0",  # noqa: S104 - DHCP listens on all
                 ledger: DhcpLedger | None = None) -> None:
        self.config = config
        #: Remembers each answered exchange for the boot script's check.
        self.ledger = ledger
        self.boot_url = boot_url.rstrip("/")
        self.interface = config.interface
        self.listen_address = listen_address
        if config.interface_address is None:  # DhcpConfig requires it when enabled
            raise ValueError("the DHCP responder needs dhcp.interface_address")
        self.server_ip = config.interface_address
        full = config.range_start is not None and config.range_end is not None
        self.leases = Leases(config.range_start, config.range_end) if (
            full and config.range_start and config.range_end) else None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def reply(self, packet: Packet, proxy_port: bool) -> bytes | None:
        """The answer to ``packet``, or None when it is not ours to answer. Pure but for leases."""
        kind = packet.message_type
        if packet.op != 1 or kind not in (DISCOVER, REQUEST, INFORM):
            return None
        # A proxy answers PXE clients only; a full server (a range configured)
        # is the network's DHCP server and answers everyone, with boot
        # information for PXE clients only (an installed Talos renews here too).
        if not packet.is_pxe and (self.leases is None or proxy_port):
            return None
        options: dict[int, bytes] = {OPT_SERVER_ID: self.server_ip.packed}
        bootfile = ""
        if packet.is_pxe:
            bootfile = (f"{self.boot_url}/boot.ipxe" if packet.is_ipxe
                        else BOOT_FILES.get(packet.arch, "undionly.kpxe"))
            options[OPT_CLASS_ID] = b"PXEClient"
        yiaddr = IPv4Address(0)
        if self.leases is not None and not proxy_port:
            wanted_raw = packet.options.get(OPT_REQUESTED_IP)
            wanted = IPv4Address(wanted_raw) if wanted_raw and len(wanted_raw) == 4 else None
            address = self.leases.address_for(packet.mac, wanted)
            if address is None:
                log.warning("DHCP range exhausted; not answering %s", packet.mac)
                return None
            yiaddr = address
            options[OPT_MASK] = self.config.netmask.packed
            options[OPT_LEASE] = self.config.lease_seconds.to_bytes(4, "big")
            if self.config.router is not None:
                options[OPT_ROUTER] = self.config.router.packed
            if self.config.dns:
                options[OPT_DNS] = b"".join(d.packed for d in self.config.dns)
            if packet.is_ipxe:
                # Tell iPXE no ProxyDHCP will come: it stops waiting for one.
                options[OPT_IPXE_ENCAP] = bytes([IPXE_NO_PXEDHCP, 1, 1])
        else:
            options[OPT_VENDOR] = PXE_DISCOVERY_BOOTFILE
        if OPT_CLIENT_UUID in packet.options:
            options[OPT_CLIENT_UUID] = packet.options[OPT_CLIENT_UUID]
        if bootfile:
            options[OPT_BOOTFILE] = bootfile.encode()[:255]
            options[OPT_TFTP_SERVER] = str(self.server_ip).encode()
        message = OFFER if kind == DISCOVER else ACK
        if self.leases is None and kind == DISCOVER and proxy_port:
            message = ACK
        return build(packet, message, yiaddr, self.server_ip, bootfile, options)

    def _socket(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if self.interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        try:
            sock.bind((self.listen_address, port))
        except OSError as exc:
            sock.close()
            raise naming_socket("DHCP", self.listen_address, port, exc) from None
        sock.settimeout(0.5)
        return sock

    def start(self) -> None:
        """Listen on the DHCP port and the PXE port. Raises ``OSError`` if a port is taken."""
        for port, proxy in ((self.config.port, False), (self.config.proxy_port, True)):
            sock = self._socket(port)
            self._sockets.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, proxy, port),
                                      name=f"dhcp-{port}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, proxy: bool, port: int) -> None:
        while not self._stop.is_set():
            try:
                data, (host, sender_port) = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            packet = parse(data)
            if packet is None:
                continue
            answer = self.reply(packet, proxy)
            if answer is None:
                continue
            if self.ledger is not None:
                leased = IPv4Address(answer[16:20])  # yiaddr: what this answer leases
                self.ledger.record(packet.mac, None if leased == IPv4Address(0) else leased)
            log.info("DHCP %s from %s answered (%s)", packet.message_type, packet.mac,
                     "proxy" if self.leases is None else "lease")
            if proxy or packet.ciaddr != IPv4Address(0):
                target = (host if host != "0.0.0.0" else "255.255.255.255", sender_port)  # noqa: S104
            else:
                target = ("255.255.255.255", sender_port if port != 67 else 68)
            try:
                sock.sendto(answer, target)
            except OSError as exc:
                log.warning("DHCP reply to %s failed: %s", packet.mac, exc)

    def stop(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

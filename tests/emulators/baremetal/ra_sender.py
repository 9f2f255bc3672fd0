#!/usr/bin/env python3
"""Sends IPv6 router advertisements on one interface, every half second, until killed.

iPXE waits ~16 s for an RA before it carries on with IPv4; a minimal RA (no
prefix, not a default router, no DHCPv6) ends that wait at once. Run inside the
rig's network namespace. Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time


def main(interface: str) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    scope = socket.if_nametoindex(interface)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    # type 134, code 0, checksum (kernel fills it), hop limit 64, flags 0,
    # router lifetime 0, reachable 0, retrans 0.
    advert = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
    while True:
        # Fails while the bridge has no carrier or no link-local address yet.
        with contextlib.suppress(OSError):
            sock.sendto(advert, ("ff02::1", 0, 0, scope))
        time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1])

"""The boot server: DHCP proxy, TFTP for iPXE binaries, HTTP boot scripts and configs."""

from __future__ import annotations


def naming_socket(what: str, host: str, port: int, exc: OSError) -> OSError:
    """``exc`` (a failed bind: a taken port, an address not on this host) saying which
    service, address and port, as the operator must find the other listener. Pure."""
    return OSError(exc.errno, f"{what} on {host}:{port}: {exc.strerror or exc}")

"""The whole boot server: HTTP, and optionally TFTP and DHCP, sharing one inventory."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from talprov.baremetal.boot.binding import DhcpLedger
from talprov.baremetal.boot.dhcp import DhcpResponder
from talprov.baremetal.boot.http import BootHttp, HttpBootServer
from talprov.baremetal.boot.tftp import TftpServer
from talprov.baremetal.config import BareMetalConfig, ConfigTls
from talprov.baremetal.inventory import Inventory
from talprov.talos.factory import split_credentials

log = logging.getLogger(__name__)


class _Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class BootServer:
    """Starts and stops the configured services together."""

    config: BareMetalConfig
    factory_url: str = "https://factory.talos.dev"
    #: The Image Factory's (user, password) and TLS setting, for the proxy (proxy_factory).
    factory_auth: tuple[str, str] | None = field(default=None, repr=False)
    factory_verify: bool | str = True
    services: list[_Service] = field(default_factory=list)
    http: HttpBootServer | None = None
    app: BootHttp | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Credentials written into the URL become the proxy's credentials (an
        # authenticated factory serves no image without), and leave the URL: it
        # names the machines' kernel URLs and shows in this object's repr.
        self.factory_url, in_url = split_credentials(self.factory_url)
        self.factory_auth = self.factory_auth or in_url

    def start(self) -> None:
        """Start HTTP, then TFTP and DHCP when enabled. Raises ``OSError`` on a taken port."""
        inventory = Inventory(self.config.inventory)
        dhcp_on = self.config.dhcp is not None and self.config.dhcp.enabled
        ledger = DhcpLedger() if dhcp_on else None
        self.app = app = BootHttp(self.config, inventory, self.factory_url,
                                  factory_auth=self.factory_auth,
                                  factory_verify=self.factory_verify, ledger=ledger)
        self.http = HttpBootServer(app, self.config.listen_address, self.config.listen_port)
        wanted: list[_Service] = [self.http]
        if self.config.config_tls is not None:
            wanted.append(HttpBootServer(app, self.config.listen_address,
                                         self.config.config_tls.port,
                                         tls=config_tls_context(self.config.config_tls)))
        if self.config.tftp_enabled:
            wanted.append(TftpServer(self.config.ipxe_dir, self.config.listen_address,
                                     self.config.tftp_port))
        if self.config.dhcp is not None and self.config.dhcp.enabled:
            wanted.append(DhcpResponder(self.config.dhcp, self.config.boot_url, ledger=ledger))
        try:
            for service in wanted:
                service.start()
                self.services.append(service)
        except BaseException:
            self.stop()
            raise
        log.info("boot server up: %s", self.config.boot_url)
        if not _loopback(self.config.listen_address):
            # iPXE builds often lack TLS, so plain HTTP is allowed here; see the
            # threat model in docs/providers/baremetal.md.
            log.warning("boot server: plain HTTP on %s:%d; boot tokens and machine configs "
                        "cross the provisioning network unencrypted: keep that network "
                        "isolated", self.config.listen_address, self.config.listen_port)

    def stop(self) -> None:
        """Stop every service and close the factory proxy's client. Idempotent."""
        while self.services:
            self.services.pop().stop()
        if self.app is not None:
            self.app.close()


def config_tls_context(tls: ConfigTls) -> ssl.SSLContext:
    """A server context for the HTTPS config endpoint. Raises ``OSError``/``ssl.SSLError``
    for unreadable or mismatched files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

"""The bare-metal provider instance's configuration (``providers.<name>`` in talprov.yaml).

The same block configures the boot server (``talprov baremetal serve``): both
sides meet in the inventory file.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from talprov.durations import Seconds, WholeSeconds
from talprov.errors import ConfigError
from talprov.urls import credentials_message


class DhcpConfig(BaseModel):
    """The DHCP side of the boot server.

    Without ``range_start``/``range_end`` it is a proxy: it answers PXE clients
    only, with boot information and no address, next to the site's own DHCP
    server. With a full range it also hands out addresses (a lab network with
    no other DHCP server).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = Field(default=True, description="Run the DHCP responder.")
    interface_address: IPv4Address | None = Field(
        default=None, validate_default=True,
        description="This host's address on the provisioning network (server identifier, "
        "TFTP next-server). Required when enabled.")
    interface: str | None = Field(
        default=None, description="Network interface to answer on (bound with "
        "SO_BINDTODEVICE so broadcast replies leave through it).")
    port: int = Field(default=67, ge=1, le=65535, description="DHCP server port.")
    proxy_port: int = Field(default=4011, ge=1, le=65535,
                            description="PXE boot-server port (proxy mode).")
    range_start: IPv4Address | None = Field(
        default=None, description="First address to lease (full DHCP mode only).")
    range_end: IPv4Address | None = Field(
        default=None, description="Last address to lease (full DHCP mode only).")
    netmask: IPv4Address = Field(default=IPv4Address("255.255.255.0"),
                                 description="Subnet mask handed out in full mode.")
    router: IPv4Address | None = Field(default=None, description="Default gateway, full mode.")
    dns: tuple[IPv4Address, ...] = Field(default=(), description="DNS servers, full mode.")
    lease_seconds: WholeSeconds = Field(default=3600, ge=60, description="Lease time, full mode.")

    @field_validator("interface_address")
    @classmethod
    def _needed_when_enabled(cls, value: IPv4Address | None,
                             info: ValidationInfo) -> IPv4Address | None:
        # A field rule, not the block's: the error then names interface_address.
        if value is None and info.data.get("enabled", True):
            raise ValueError("required when dhcp is enabled (this host's address on the "
                             "provisioning network); or set enabled: false")
        return value


class ConfigTls(BaseModel):
    """HTTPS for the config endpoint: machine configs never cross the network in clear."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cert: str = Field(description="PEM certificate (chain) file. Talos must trust it: it "
                      "fetches talos.config with its own root certificates.")
    key: str = Field(description="PEM private key file.")
    port: int = Field(default=8443, ge=1, le=65535,
                      description="HTTPS port, on listen_address and boot_url's host.")


class BareMetalConfig(BaseModel):
    """Inventory, boot server and BMC behaviour of one bare-metal provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    inventory: str = Field(description="Path of the inventory SQLite file (created 0600 "
                           "if missing; its directory must exist).")
    boot_url: str = Field(
        pattern=r"^https?://[^/\s]+(:\d+)?/?$",
        description="Base URL at which machines reach the boot server's HTTP endpoint, "
        "e.g. http://10.0.0.5:8081 (iPXE fetches scripts, kernels and configs there).")
    listen_address: str = Field(default="0.0.0.0", description="HTTP listen address.")  # noqa: S104
    listen_port: int = Field(default=8081, ge=1, le=65535, description="HTTP listen port.")
    mirror_dir: str | None = Field(
        default=None,
        description="Local directory laid out as <schematic id>/<version>/kernel-<arch> and "
        "initramfs-<arch>.xz. When set, machines get kernels from the boot server and "
        "schematic ids are computed locally (no Image Factory call).")
    proxy_factory: bool = Field(
        default=False,
        description="Without a mirror: serve factory kernels through the boot server "
        "(machines need no internet access) instead of pointing iPXE at the factory.")
    console_args: tuple[str, ...] = Field(
        default=("console=tty0", "console=ttyS0,115200n8"),
        description="Console kernel arguments given to every machine.")
    extra_kernel_args: tuple[str, ...] = Field(
        default=(), description="Kernel arguments added for every machine of this instance.")
    tftp_enabled: bool = Field(default=True, description="Serve iPXE binaries over TFTP.")
    tftp_port: int = Field(default=69, ge=1, le=65535, description="TFTP port.")
    ipxe_dir: str = Field(default="/usr/lib/ipxe",
                          description="Directory of iPXE binaries (Debian package 'ipxe').")
    dhcp: DhcpConfig | None = Field(default=None, description="DHCP responder; unset = none.")
    config_tls: ConfigTls | None = Field(
        default=None, description="Serve /config/ over HTTPS only (the rest stays on HTTP, "
        "which iPXE needs); unset = plain HTTP.")
    bmc_min_interval: Seconds = Field(
        default=0.5, ge=0, description="Seconds between two commands to one BMC.")
    bmc_attempts: int = Field(default=2, ge=1, le=10,
                              description="Tries per BMC command before it counts as failed.")
    power_action: str = Field(
        default="cycle", pattern="^(on|cycle)$",
        description="How a provisioning machine is started: 'cycle' (reset if already on) "
        "or 'on' (leave a running machine alone).")
    install_timeout: Seconds = Field(
        default=1800.0, gt=0,
        description="Seconds from power-on until the machine must have fetched its config.")
    wipe_seconds: Seconds = Field(
        default=300.0, ge=0,
        description="Seconds the wipe image runs before the machine is powered off, unless "
        "it reports the wipe done earlier: counted from the wipe kernel's fetch when the boot "
        "server serves kernels, else from the wipe script's fetch (include the download).")
    wipe_timeout: Seconds = Field(
        default=1800.0, gt=0,
        description="Seconds after which a wipe that never booted is given up: the machine "
        "is powered off and cordoned for a person to look at.")
    poll_interval: Seconds = Field(
        default=5.0, gt=0, description="Seconds between checks while a machine installs or wipes.")
    observe_interval: Seconds = Field(
        default=60.0, ge=0,
        description="Seconds between power-state queries of one machine in list_machines.")

    @field_validator("boot_url")
    @classmethod
    def _no_credentials_in_boot_url(cls, value: str) -> str:
        # The pattern lets 'user:password@' through. The type's own rule, with the
        # message config.py's rule of every provider's url gives, so that a
        # --file block (which that rule never sees) meets it too.
        if "@" in urlsplit(value).netloc:
            raise ValueError(credentials_message("baremetal"))
        return value

    def check_boot_files(self) -> None:
        """What the boot server reads from this host and that must be there before it
        starts: ``ipxe_dir`` when TFTP is on. Raises ``ConfigError`` naming the field
        (``config check`` and ``serve`` say it, not a TFTP library's traceback).
        Reads the file system only."""
        if self.tftp_enabled and not Path(self.ipxe_dir).is_dir():
            raise ConfigError("ipxe_dir", f"{self.ipxe_dir} does not exist or is not a "
                              "directory (install Debian's 'ipxe', or set tftp_enabled: false)")

    def config_base_url(self) -> str:
        """Where machines fetch their config: ``boot_url``, or its host on HTTPS."""
        if self.config_tls is None:
            return self.boot_url.rstrip("/")
        host = urlsplit(self.boot_url).hostname or ""
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{self.config_tls.port}"

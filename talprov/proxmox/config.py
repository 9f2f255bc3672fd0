"""The Proxmox VE provider instance's configuration (``providers.<name>`` in talprov.yaml).

Authentication is either an API token (``token_id`` + ``token_secret``, preferred:
no password, and its privileges can be narrowed) or a user's password, which
buys a ticket that is renewed when PVE rejects it. The secrets are ``SecretStr``
so they never appear in reprs, logs or errors; in talprov.yaml write them as
references (``${env:PVE_TOKEN}`` or ``${file:/run/secrets/pve}``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from talprov.durations import Seconds
from talprov.urls import credentials_message

TOKEN_ID_PATTERN = r"^[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*$"  # noqa: S105
FINGERPRINT_PATTERN = re.compile(r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$")


class ProxmoxConfig(BaseModel):
    """Connection and behaviour settings of one Proxmox VE provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(
        pattern=r"^https://[^/\s]+(:\d+)?/?$",
        description="Base URL of the PVE API, e.g. https://pve1.example.net:8006 "
        "(any node of the cluster; HTTPS only).",
    )
    token_id: str | None = Field(
        default=None,
        pattern=TOKEN_ID_PATTERN,
        description="API token id, user@realm!tokenname. Give token_secret with it.",
    )
    token_secret: SecretStr | None = Field(
        default=None, description="The API token's secret (a UUID); use a secret reference."
    )
    username: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="User for ticket (password) authentication, user@realm. "
        "Used only when no token is configured.",
    )
    password: SecretStr | None = Field(
        default=None, description="The user's password; use a secret reference."
    )
    ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA (or the self-signed certificate) that signed "
        "the PVE API certificate.",
    )
    fingerprint: str | None = Field(
        default=None,
        description="SHA-256 fingerprint of the PVE API certificate (AA:BB:... as "
        "'pvenode cert info' prints it). Pins that certificate instead of checking a CA.",
    )
    insecure: bool = Field(
        default=False,
        description="Skip TLS verification entirely. Only for throw-away labs.",
    )
    timeout: Seconds = Field(default=30.0, gt=0, description="Seconds to wait for one API reply.")
    task_timeout: Seconds = Field(
        default=300.0,
        gt=0,
        description="Seconds talprov blocks on a short PVE task (ISO upload, seed ISO "
        "delete), and the longest ensure-vm waits for an untagged VM create in flight "
        "(possibly its own from before a crash) before creating.",
    )
    poll_interval: Seconds = Field(
        default=2.0, gt=0, description="Seconds between polls of a running task or VM."
    )
    shutdown_timeout: Seconds = Field(
        default=60.0,
        ge=0,
        description="Seconds a guest gets to power off on ACPI shutdown before it is "
        "stopped hard during deprovision.",
    )
    running_timeout: Seconds = Field(
        default=600.0,
        gt=0,
        description="Seconds a VM may take from start to 'running' before the request fails.",
    )
    allowed_nodes: tuple[str, ...] = Field(
        default=(),
        description="Nodes machines may be placed on when provider_data names none; "
        "empty means every online node.",
    )
    allowed_storages: tuple[str, ...] = Field(
        default=(),
        description="Storages the disk may be put on when provider_data names none; "
        "empty means every active storage that holds VM images.",
    )
    iso_storage: str = Field(
        default="local",
        description="Default storage (content type 'iso') for the Talos ISO and the "
        "per-machine cloud-init seed ISO.",
    )

    iso_transfer: Literal["auto", "download", "upload"] = Field(
        default="auto",
        description="How the Talos ISO reaches a node: 'download' (the node fetches it "
        "from the Image Factory with download-url), 'upload' (talprov uploads it from its "
        "local cache, for nodes without internet access) or 'auto' (download, and upload "
        "when the download task fails).",
    )

    @classmethod
    def factory_credentials_problem(cls, block: dict[str, Any]) -> tuple[str, str] | None:
        """With an Image Factory that has credentials: the field of ``block`` (this
        type's settings as written) that cannot work with it and why, else None.
        ``iso_transfer: download``: a node's download-url carries no credentials and
        such a factory serves images to their owner only, so every download would be
        refused. Pure."""
        if block.get("iso_transfer") == "download":
            return "iso_transfer", (
                "download: the Image Factory has credentials (image_factory.username, or "
                "in its url), which a node's download-url cannot carry, and it serves "
                "images to their owner only; set iso_transfer: upload (auto uploads too)")
        return None

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        # The pattern lets 'user:password@' through, and host_port then read the
        # password as a port: a traceback that showed it. Never echo the value.
        if "@" in value:
            raise ValueError(credentials_message("proxmox"))
        return value

    @field_validator("fingerprint")
    @classmethod
    def _check_fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not FINGERPRINT_PATTERN.match(value):
            raise ValueError("expected 32 colon-separated hex bytes (a SHA-256 fingerprint)")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> ProxmoxConfig:
        token = self.token_id is not None or self.token_secret is not None
        if token and (self.token_id is None or self.token_secret is None):
            raise ValueError("token_id and token_secret go together")
        if not token and (self.username is None or self.password is None):
            raise ValueError("give token_id + token_secret, or username + password")
        trust = [self.ca_file is not None, self.fingerprint is not None, self.insecure]
        if sum(trust) > 1:
            raise ValueError("ca_file, fingerprint and insecure exclude one another")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        """Host and port of ``url`` (8006, PVE's port, when none is given)."""
        netloc = self.url.removeprefix("https://").rstrip("/")
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            return host, int(rest[1:]) if rest.startswith(":") else 8006
        host, _, port = netloc.partition(":")
        return host, int(port) if port else 8006

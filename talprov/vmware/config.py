"""The vSphere provider instance's configuration (``providers.<name>`` in talprov.yaml).

talprov logs in to vCenter's SDK endpoint with a user and password (a session
that is renewed once when vCenter forgets it). TLS is verified by default with
the system's CAs; ``ca_file`` trusts one CA (or vCenter's self-signed
certificate), ``thumbprint`` pins the certificate itself, and ``insecure`` turns
checking off only when asked. The password is a ``SecretStr``: write it as a
reference (``${env:VSPHERE_PASSWORD}``) in talprov.yaml.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from talprov.durations import Seconds
from talprov.urls import credentials_message

# SHA-1 (20 bytes), SHA-256 (32) or SHA-512 (64), colon-separated or not.
_THUMBPRINT = re.compile(r"^(?:[0-9A-Fa-f]{2}:?){19,63}[0-9A-Fa-f]{2}$")
_DIGEST_BYTES = (20, 32, 64)


class VSphereConfig(BaseModel):
    """Connection and behaviour settings of one vCenter provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(
        pattern=r"^https://[^/\s]+(/sdk)?/?$",
        description="vCenter's SDK endpoint, e.g. https://vcenter.example.net/sdk "
        "(HTTPS only; /sdk is added when missing).",
    )
    username: str = Field(min_length=1, description="vCenter user, e.g. talprov@vsphere.local.")
    password: SecretStr = Field(description="The user's password; use a secret reference.")
    datacenter: str | None = Field(
        default=None,
        description="Datacenter name (or inventory path). Unset: the only datacenter.",
    )
    ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA (or the self-signed certificate) that signed "
        "vCenter's certificate.",
    )
    thumbprint: str | None = Field(
        default=None,
        description="SHA-256 (or SHA-1) thumbprint of vCenter's certificate, AA:BB:...; "
        "pins that certificate instead of checking a CA.",
    )
    insecure: bool = Field(
        default=False, description="Skip TLS verification entirely. Only for throw-away labs."
    )
    timeout: Seconds = Field(default=60.0, gt=0, description="Seconds to wait for one API reply.")
    poll_interval: Seconds = Field(
        default=2.0, gt=0, description="Seconds between polls of a running vCenter task or VM."
    )
    task_timeout: Seconds = Field(
        default=1800.0,
        gt=0,
        description="Seconds a template import or clone may take before the request fails; "
        "also how long a request waits for another process's import of the same template.",
    )
    shutdown_timeout: Seconds = Field(
        default=60.0,
        ge=0,
        description="Seconds a guest gets to shut down (VMware Tools) before it is "
        "powered off hard during deprovision.",
    )
    running_timeout: Seconds = Field(
        default=600.0,
        gt=0,
        description="Seconds a VM may take from power-on to 'poweredOn' before the request fails.",
    )
    template_folder: str | None = Field(
        default=None,
        description="VM folder (path below the datacenter's VM folder) for imported Talos "
        "templates. Unset: the request's folder.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        # The pattern lets 'user:password@' through and host_port drops it without
        # a word (QA), as Proxmox's did. Never echo the value.
        if "@" in value:
            raise ValueError(credentials_message("vmware"))
        return value

    @field_validator("thumbprint")
    @classmethod
    def _check_thumbprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "")
        if not _THUMBPRINT.match(value) or len(digits) // 2 not in _DIGEST_BYTES:
            raise ValueError("expected a SHA-1, SHA-256 or SHA-512 thumbprint in hex")
        return value

    @model_validator(mode="after")
    def _one_trust_mode(self) -> VSphereConfig:
        if self.insecure and (self.ca_file or self.thumbprint):
            raise ValueError("insecure cannot be combined with ca_file or thumbprint")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) of the SDK endpoint (443 unless given)."""
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or 443

    @property
    def trust(self) -> str:
        """What vCenter's certificate is checked against: "thumbprint" (the pin
        replaces CA checks), "ca_file", or "" for the system's CAs (or none, with
        ``insecure``); error messages say what is wrong by it."""
        return "thumbprint" if self.thumbprint else "ca_file" if self.ca_file else ""

    @property
    def thumbprint_hex(self) -> str | None:
        """The pinned thumbprint as lower-case hex without colons."""
        return self.thumbprint.replace(":", "").lower() if self.thumbprint else None

"""Settings of the autoscaler service (``service.autoscaler`` in talprov.yaml, or
``talprov autoscaler serve``'s options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from talprov.autoscaler.groups import NodeGroups
from talprov.autoscaler.server import AutoscalerServer, TlsFiles, is_loopback
from talprov.config import split_listen
from talprov.errors import validate
from talprov.scaler.apply import Scaler

DEFAULT_LISTEN = "127.0.0.1:8086"


class AutoscalerTls(BaseModel):
    """PEM files: this server's certificate and key, and the CA that signed the
    cluster-autoscaler's client certificate (its cloud-config's ``cert``/``key``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cert: str = Field(min_length=1)
    key: str = Field(min_length=1)
    ca: str = Field(min_length=1)

    def files(self, where: str = "tls") -> TlsFiles:
        return TlsFiles(cert=Path(self.cert), key=Path(self.key), ca=Path(self.ca), where=where)


class AutoscalerConfig(BaseModel):
    """Where the externalgrpc CloudProvider service listens and how it is secured."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Run it inside ``talprov serve`` (the block alone does not).
    enabled: bool = True
    listen: str = DEFAULT_LISTEN
    tls: AutoscalerTls | None = None
    #: Serve without TLS; only allowed on a loopback address.
    plain: bool = False
    #: Proxmox provider instance → the region its cloud controller names in
    #: providerIDs (``proxmox://<region>/<vmid>``); default: the instance name.
    proxmox_regions: dict[str, str] = Field(default_factory=dict)
    #: Seconds a size change waits for the cluster's lease before UNAVAILABLE.
    lease_wait: float = Field(default=20.0, gt=0, le=600)

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        split_listen(value)  # the same rule and words as service.listen
        return value

    @model_validator(mode="after")
    def _secured(self) -> AutoscalerConfig:
        if self.tls is None:
            if not self.plain:
                raise ValueError("tls: is required (cert, key and the clients' ca); "
                                 "plain: true only on a loopback address")
            if not is_loopback(self.host_port()[0]):
                raise ValueError("plain: only on a loopback address (use tls)")
        return self

    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)

    def server(self, scaler: Scaler, *, where: str = "autoscaler") -> AutoscalerServer:
        """An unstarted server for the node groups of ``scaler``'s store."""
        groups = NodeGroups(scaler, proxmox_regions=self.proxmox_regions,
                            lease_wait=self.lease_wait)
        host, port = self.host_port()
        return AutoscalerServer(groups, host=host, port=port,
                                tls=None if self.tls is None else self.tls.files(f"{where}.tls"),
                                allow_plain=self.plain)


def parse_autoscaler_config(raw: dict[str, Any] | None, *, where: str) -> AutoscalerConfig:
    """Validate an autoscaler block. Raises ConfigError naming ``where`` + the field."""
    return validate(AutoscalerConfig, raw or {}, where)

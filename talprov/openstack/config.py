"""The OpenStack provider instance's configuration (``providers.<name>`` in talprov.yaml).

Credentials come the OpenStack way: a ``cloud`` named in ``clouds.yaml`` (the
``OS_*`` environment variables are honoured too, exactly as the ``openstack``
CLI honours them), or an ``auth`` block shaped like a clouds.yaml ``auth``
section whose secrets are ``SecretStr`` (write them as ``${env:NAME}`` or
``${file:PATH}`` references in talprov.yaml).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from talprov.durations import Seconds


class OpenStackAuth(BaseModel):
    """A clouds.yaml-style ``auth`` block: an application credential or a password."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    auth_url: str = Field(min_length=1, description="Keystone URL, e.g. "
                          "https://keystone.example:5000/v3.")
    application_credential_id: str | None = Field(default=None, description=
                                                  "Application credential id (preferred).")
    application_credential_name: str | None = Field(default=None, description=
                                                    "Application credential name (with a user).")
    application_credential_secret: SecretStr | None = Field(default=None, description=
                                                            "Application credential secret.")
    username: str | None = Field(default=None, description="User name (password auth).")
    user_id: str | None = Field(default=None, description="User id (password auth).")
    password: SecretStr | None = Field(default=None, description="Password (password auth).")
    user_domain_name: str | None = Field(default=None, description="The user's domain name.")
    user_domain_id: str | None = Field(default=None, description="The user's domain id.")
    project_name: str | None = Field(default=None, description="Project to scope to.")
    project_id: str | None = Field(default=None, description="Project id to scope to.")
    project_domain_name: str | None = Field(default=None, description="The project's domain.")
    project_domain_id: str | None = Field(default=None, description="The project's domain id.")

    @model_validator(mode="after")
    def _one_method(self) -> OpenStackAuth:
        app = self.application_credential_secret is not None
        password = self.password is not None
        if app == password:
            raise ValueError("give either application_credential_secret (with "
                             "application_credential_id or _name) or password")
        if app and not (self.application_credential_id or self.application_credential_name):
            raise ValueError("application_credential_secret needs application_credential_id "
                             "or application_credential_name")
        if password and not (self.username or self.user_id):
            raise ValueError("password needs username or user_id")
        if password and not (self.project_name or self.project_id):
            raise ValueError("password auth needs project_name or project_id")
        return self

    @property
    def auth_type(self) -> str:
        """The keystoneauth plugin name for this block."""
        if self.application_credential_secret is not None:
            return "v3applicationcredential"
        return "password"

    def to_sdk(self) -> dict[str, str]:
        """The auth dict for openstacksdk, secrets revealed. Never log the result."""
        out: dict[str, str] = {}
        for key, value in self:
            if value is None:
                continue
            out[key] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return out


class OpenStackConfig(BaseModel):
    """Connection and behaviour settings of one OpenStack provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cloud: str | None = Field(
        default=None,
        description="A cloud named in clouds.yaml. With neither cloud nor auth, the OS_* "
        "environment variables (or OS_CLOUD) decide, as for the openstack CLI.",
    )
    auth: OpenStackAuth | None = Field(
        default=None, description="An explicit auth block instead of clouds.yaml."
    )
    region: str | None = Field(default=None, description="Region name, e.g. RegionOne.")
    interface: Literal["public", "internal", "admin"] = Field(
        default="public", description="Which catalog endpoints to use."
    )
    ca_file: str | None = Field(
        default=None, description="CA bundle that signs the cloud's TLS certificates."
    )
    insecure: bool = Field(
        default=False,
        description="Skip TLS verification. Off by default; only for test clouds.",
    )
    api_timeout: Seconds = Field(default=60.0, gt=0, description="Seconds per API call.")
    active_timeout: Seconds = Field(
        default=1200.0, gt=0,
        description="Seconds a server may take to become ACTIVE before the request fails.",
    )
    poll_interval: Seconds = Field(
        default=5.0, gt=0, description="Seconds between looks at a building server."
    )
    firmware: Literal["auto", "bios", "uefi"] = Field(
        default="auto",
        description="hw_firmware_type of uploaded images; auto = uefi for arm64, bios for "
        "amd64 (Talos images boot either way on amd64).",
    )
    image_visibility: Literal["private", "shared", "community", "public"] = Field(
        default="private", description="Visibility of the Glance images talprov uploads."
    )

    @model_validator(mode="after")
    def _one_source(self) -> OpenStackConfig:
        if self.cloud is not None and self.auth is not None:
            raise ValueError("give cloud or auth, not both")
        if self.insecure and self.ca_file is not None:
            raise ValueError("insecure and ca_file contradict each other")
        return self

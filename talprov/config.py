"""talprov.yaml: which provider instances exist, where state lives, the image factory.

Looked up from ``--config``, then ``TALPROV_CONFIG``, then ``./talprov.yaml``, then
``$XDG_CONFIG_HOME/talprov/config.yaml``. String values may use ``${env:NAME}`` and
``${file:PATH}`` references; resolved values are treated as secrets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from talprov.errors import ConfigError, validation_message
from talprov.secrets import resolve_tree

DEFAULT_FACTORY_URL = "https://factory.talos.dev"


class ImageFactoryConfig(BaseModel):
    """Where Talos images come from; point ``url`` at a mirror for air-gapped sites."""

    model_config = ConfigDict(extra="forbid")

    url: str = DEFAULT_FACTORY_URL
    ca_file: str | None = None
    insecure: bool = Field(default=False, description="Skip TLS verification (explicit opt-in).")
    username: str | None = Field(default=None, min_length=1, description=(
        "HTTP Basic user of an authenticated factory (set with password)."))
    password: SecretStr | None = Field(default=None, description=(
        "Its password; use ${env:NAME} or ${file:PATH}."))

    @model_validator(mode="after")
    def _both_or_neither(self) -> ImageFactoryConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    def auth(self) -> tuple[str, str] | None:
        """(username, password) for an authenticated factory, or None."""
        if self.username is None or self.password is None:
            return None
        return self.username, self.password.get_secret_value()

    def verify(self) -> bool | str:
        """The value for an HTTP client's ``verify`` argument."""
        if self.insecure:
            return False
        return self.ca_file or True


class ProviderInstanceConfig(BaseModel):
    """The common part of a provider instance block; the rest belongs to its type."""

    model_config = ConfigDict(extra="allow")

    type: str
    concurrency: int = Field(default=8, ge=1, le=256)


class TalprovConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str | None = None
    installation: str = Field(default="talprov", pattern=r"^[a-z0-9][-a-z0-9]{0,30}$")
    cache_dir: str | None = None
    image_factory: ImageFactoryConfig = Field(default_factory=ImageFactoryConfig)
    providers: dict[str, ProviderInstanceConfig] = Field(default_factory=dict)
    service: dict[str, Any] | None = None
    baremetal: dict[str, Any] | None = None


class LoadedConfig(BaseModel):
    """A parsed config and the file it came from (None when no file was found)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: TalprovConfig
    path: Path | None

    def provider_block(self, name: str) -> dict[str, Any]:
        """The raw config block of provider instance ``name``.

        Raises ``ConfigError`` when no such instance is configured.
        """
        block = self.config.providers.get(name)
        if block is None:
            known = ", ".join(sorted(self.config.providers)) or "none configured"
            where = str(self.path) if self.path else "config"
            raise ConfigError(where, f"unknown provider {name!r} (configured: {known})")
        return block.model_dump()


def find_config_file(explicit: str | None) -> Path | None:
    """The config file to use, following the documented search order."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TALPROV_CONFIG")
    if env:
        return Path(env)
    local = Path("talprov.yaml")
    if local.exists():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = xdg / "talprov" / "config.yaml"
    return candidate if candidate.exists() else None


def load_config(explicit: str | None = None) -> LoadedConfig:
    """Read and validate the config.

    Raises ``ConfigError`` naming the file and field for unreadable files,
    malformed YAML, unknown keys, wrong types and unresolvable references.
    """
    path = find_config_file(explicit)
    if path is None:
        return LoadedConfig(config=TalprovConfig(), path=None)
    where = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(where, f"cannot read config file: {exc.strerror}") from None
    raw = parse_yaml_mapping(text, where)
    # Resolve per top-level key so errors read "FILE: providers.x.field", the
    # same "file: field" shape as every other validation error.
    raw = {key: resolve_tree(value, where=f"{where}: {key}", base_dir=path.parent)
           for key, value in raw.items()}
    try:
        config = TalprovConfig.model_validate(raw)
    except ValidationError as exc:
        field, message = validation_message(exc, where, sep=": ")
        raise ConfigError(field, message) from None
    return LoadedConfig(config=config, path=path)


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse a single YAML mapping; errors name the file and line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{where}:{line}".rstrip(":"), f"invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(where, "expected a mapping at the top level")
    return data

"""Finds provider types through the ``talprov.providers`` entry-point group.

Built-in drivers register there exactly as a third-party plugin would, so a
plugin needs nothing from us but an entry point naming its provider class.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from talprov.errors import ConfigError, validation_message
from talprov.providers.protocol import Provider, ProviderClass, Runtime

ENTRY_POINT_GROUP = "talprov.providers"


@dataclass(frozen=True)
class ProviderTypeInfo:
    """One installed provider type, as `talprov providers` lists it."""

    name: str
    target: str  # "module:Class" of the entry point
    distribution: str | None


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # First one wins, as with console scripts; duplicates are a packaging mistake.
        found.setdefault(ep.name, ep)
    return found


def installed_types() -> list[ProviderTypeInfo]:
    """Every provider type installed in this environment, by name. Never raises."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist.name if ep.dist is not None else None
        infos.append(ProviderTypeInfo(name=name, target=ep.value, distribution=dist))
    return infos


def load_type(type_name: str, *, where: str = "type") -> ProviderClass:
    """Import the provider class registered under ``type_name``.

    Raises ``ConfigError`` naming ``where`` when the type is unknown, or when its
    module cannot be imported (typically a missing extra, e.g. ``talprov[aws]``).
    """
    ep = _entry_points().get(type_name)
    if ep is None:
        known = ", ".join(sorted(_entry_points())) or "none installed"
        raise ConfigError(where, f"unknown provider type {type_name!r} (installed: {known})")
    try:
        loaded: Any = ep.load()
    except ImportError as exc:
        raise ConfigError(
            where,
            f"provider type {type_name!r} cannot be loaded ({exc}); "
            f"install its extra, e.g. pip install 'talprov[{type_name}]'",
        ) from None
    for attr in ("config_model", "data_model", "state_model", "type_name"):
        if not hasattr(loaded, attr):
            raise ConfigError(where, f"provider type {type_name!r} has no {attr}")
    return cast(ProviderClass, loaded)


def build_provider(
    instance: str, raw: dict[str, Any], runtime: Runtime, *, where: str
) -> Provider:
    """Validate ``raw`` against the type's config model and construct the provider.

    ``raw`` is the instance's block from talprov.yaml without the common keys
    (``type``, ``concurrency``). Raises ``ConfigError`` naming the bad field.
    """
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        raise ConfigError(f"{where}.type", "required: the provider type, e.g. aws")
    cls = load_type(type_name, where=f"{where}.type")
    body = {k: v for k, v in raw.items() if k not in COMMON_INSTANCE_KEYS}
    try:
        config = cls.config_model.model_validate(body)
    except ValidationError as exc:
        field, message = validation_message(exc, where)
        raise ConfigError(field, message) from None
    return cls(instance, config, runtime)


def validate_provider_data(
    provider: Provider, data: dict[str, Any], *, where: str
) -> BaseModel:
    """Validate a request's provider_data with the provider's own model.

    Raises ``ConfigError`` naming ``<where>.<field>``.
    """
    try:
        return provider.data_model.model_validate(data)
    except ValidationError as exc:
        field, message = validation_message(exc, where)
        raise ConfigError(field, message) from None


#: Keys of a provider instance block that talprov itself reads.
COMMON_INSTANCE_KEYS = frozenset({"type", "concurrency"})

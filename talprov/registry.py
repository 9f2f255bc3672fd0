"""Finds provider types through the ``talprov.providers`` entry-point group.

Built-in drivers register there exactly as a third-party plugin would, so a
plugin needs nothing from us but an entry point naming its provider class.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import (
    EntryPoint,
    PackageNotFoundError,
    distribution,
    entry_points,
    packages_distributions,
)
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from talprov.errors import (
    ConfigError,
    MissingExtra,
    dotted,
    validate,
    validation_message,
    written_flag,
)
from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import (
    ChecksRequests,
    Provider,
    ProviderClass,
    Runtime,
    SharesConnections,
)
from talprov.providers.types import MachineRequest

ENTRY_POINT_GROUP = "talprov.providers"
#: Optional second group: each type's settings model in a module that needs no SDK,
#: so an instance block is checked even where the type's extra is not installed.
CONFIG_ENTRY_POINT_GROUP = "talprov.provider_configs"
DISTRIBUTION = "talprov"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;.*extra\s*==\s*[\"']([^\"']+)")


@dataclass(frozen=True)
class ProviderTypeInfo:
    """One installed provider type, as `talprov providers` lists it."""

    name: str
    target: str  # "module:Class" of the entry point
    distribution: str | None
    #: Why the type cannot be used here (its extra is not installed, or its module
    #: does not import), None when it loads.
    unusable: str | None = None


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # First one wins, as with console scripts; duplicates are a packaging mistake.
        found.setdefault(ep.name, ep)
    return found


def installed_types() -> list[ProviderTypeInfo]:
    """Every provider type registered in this environment, by name, each with why it
    cannot be used when it cannot (see :func:`type_unusable`). Never raises."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist.name if ep.dist is not None else None
        infos.append(ProviderTypeInfo(name=name, target=ep.value, distribution=dist,
                                      unusable=type_unusable(name)))
    return infos


def type_unusable(type_name: str) -> str | None:
    """Why provider type ``type_name`` cannot be loaded here, in words for a person
    (``not installed: pip install 'talprov[proxmox]'``); None when it loads.

    Imports the type's module (a plugin's import may fail in any way: that is
    reported, not raised). Idempotent.
    """
    try:
        load_type(type_name)
    except MissingExtra as exc:
        extra = _PIP_EXTRA.search(exc.message)
        return f"not installed: {extra[0]}" if extra else f"not installed: {exc.message}"
    except ConfigError as exc:
        return exc.message
    except Exception as exc:  # a plugin whose import fails otherwise
        return f"cannot be loaded: {exc}"
    return None


_PIP_EXTRA = re.compile(r"pip install 'talprov\[[^\]]+\]'")


def load_type(type_name: str, *, where: str = "type") -> ProviderClass:
    """Import the provider class registered under ``type_name``.

    Raises ``ConfigError`` naming ``where`` when the type is unknown, or when its
    module cannot be imported (typically a missing extra, e.g. ``talprov[aws]``).
    """
    ep = _entry_points().get(type_name)
    if ep is None:
        known = ", ".join(sorted(_entry_points())) or "none installed"
        raise ConfigError(where, f"unknown provider type {type_name!r} (installed: {known})")
    if ep.dist is not None and ep.dist.name == DISTRIBUTION and type_name in _extras():
        # Checked before loading: drivers import some SDK modules lazily, which
        # would otherwise fail later, in a step or a health check.
        require_extra(type_name, where=where, what=f"provider type {type_name!r}")
    try:
        loaded: Any = ep.load()
    except ImportError as exc:
        raise MissingExtra(
            where,
            f"provider type {type_name!r} cannot be loaded ({exc}); "
            f"install its extra, e.g. pip install 'talprov[{type_name}]'",
        ) from None
    for attr in ("config_model", "data_model", "state_model", "type_name"):
        if not hasattr(loaded, attr):
            raise ConfigError(where, f"provider type {type_name!r} has no {attr}")
    return cast(ProviderClass, loaded)


def config_model_of(type_name: str) -> type[BaseModel] | None:
    """The settings model of provider type ``type_name``.

    The provider class's ``config_model`` when the type loads; else (its extra is
    not installed) the model registered for it under ``talprov.provider_configs``,
    whose module imports no SDK. None when neither loads. Never raises; idempotent.
    """
    # A missing extra, or a plugin whose import fails in any way: try the model alone.
    with contextlib.suppress(Exception):
        return load_type(type_name).config_model
    found = [ep for ep in entry_points(group=CONFIG_ENTRY_POINT_GROUP) if ep.name == type_name]
    if not found:
        return None
    try:
        model = found[0].load()
    except Exception:  # a plugin's import may fail in any way
        return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


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
    provider = cls(instance, validate(cls.config_model, body, where), runtime)
    if isinstance(provider, SharesConnections):
        provider.use_concurrency(instance_concurrency(raw))
    return provider


def instance_concurrency(raw: dict[str, Any]) -> int:
    """The instance block's ``concurrency``: how many steps run at once on it."""
    return int(raw.get("concurrency", DEFAULT_CONCURRENCY))


def unverified_tls(raw: dict[str, Any]) -> str | None:
    """The setting of an instance block that turns TLS verification of its endpoint
    off (``insecure: true``, AWS's ``verify_tls: false``), as written; None when the
    certificate is checked. Pure."""
    # A quoted flag or a 0/1 means what the model reads it as ("true" and 1 are True):
    # see written_flag.
    insecure = raw.get("insecure")
    if insecure is True or written_flag(insecure) is True:
        return "insecure: true"
    verify = raw.get("verify_tls")
    if verify is False or written_flag(verify) is False:
        return "verify_tls: false"
    return None


def strict_provider_data(model: type[BaseModel], data: Mapping[str, Any]) -> BaseModel:
    """``data``, a new request's provider_data, validated by the provider's
    ``model`` as every front door validates it (API bodies, request files, cluster
    specs): strictly, as JSON, so a number or flag must be one ("20" is no size,
    "true" no flag) while enums, literals and dates still come as strings. Data
    read back from a store is validated laxly instead (``STORED``).

    ``data`` must hold only what JSON can (see :func:`validate_provider_data` for
    a file's). Raises ``ValidationError``, whose errors carry the input: report
    their type and location, never the input. Pure.
    """
    return model.model_validate_json(json.dumps(data), strict=True)


def validate_provider_data(
    provider: Provider, data: Mapping[str, Any], *, where: str
) -> BaseModel:
    """Validate a request's provider_data with the provider's own model, strictly
    as the API does (:func:`strict_provider_data`).

    Raises ``ConfigError`` naming ``<where>.<field>``, in the API's words ("must
    be an integer, not a string (remove the quotes)"); a value JSON cannot carry
    (a YAML date, binary, a key that is not a string) is refused at its field too.
    Pure.
    """
    found = _not_json(data)
    if found is not None:
        loc, message = found
        raise ConfigError(f"{where}.{dotted(loc)}" if loc else where, message)
    try:
        return strict_provider_data(provider.data_model, data)
    except ValidationError as exc:
        field, message = validation_message(exc, where, model=provider.data_model)
        raise ConfigError(field, message) from None


def _not_json(value: Any) -> tuple[list[str | int], str] | None:
    """The location of the first part of ``value`` (as YAML read it) that JSON
    cannot carry, with what it must be instead; None when JSON carries all. Never
    the value. Pure."""
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return [], "every key must be a string (quote it)"
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return [], "must be a string, number, true or false, list or mapping (quote a date)"
    for place, item in items:
        inner = _not_json(item)
        if inner is not None:
            return [place, *inner[0]], inner[1]
    return None


def check_request(provider: Provider, request: MachineRequest, *, where: str) -> None:
    """Run the provider's pre-flight check (``ChecksRequests``), if it has one.

    No cloud call. Raises ``ConfigError`` at ``<where>: <field>`` naming what the
    request asks that this instance cannot do. Idempotent.
    """
    if not isinstance(provider, ChecksRequests):
        return
    try:
        provider.check_request(request)
    except InvalidRequest as exc:
        field = exc.field or ""
        message = exc.message.removeprefix(f"{field}: ") if field else exc.message
        raise ConfigError(f"{where}: {field}" if field else where, message) from None


#: Keys of a provider instance block that talprov itself reads.
COMMON_INSTANCE_KEYS = frozenset({"type", "concurrency"})
#: Steps run at once on an instance whose block does not say (config.ProviderInstanceConfig).
DEFAULT_CONCURRENCY = 8


# -- optional dependencies (extras) ------------------------------------------------


@functools.cache
def _extras() -> dict[str, tuple[str, ...]]:
    """talprov's extras and the distributions each requires (from its metadata)."""
    try:
        requires = distribution(DISTRIBUTION).requires or []
    except PackageNotFoundError:
        return {}
    extras: dict[str, list[str]] = {}
    for line in requires:
        match = _REQUIREMENT.match(line)
        if match is not None and match[1] != DISTRIBUTION:
            extras.setdefault(match[2], []).append(match[1])
    return {extra: tuple(names) for extra, names in extras.items()}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _top_level_modules() -> dict[str, tuple[str, ...]]:
    """Importable top-level modules of each installed distribution, by normalized name."""
    modules: dict[str, list[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules.setdefault(_normalized(dist), []).append(module)
    return {dist: tuple(sorted(mods)) for dist, mods in modules.items()}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_for_extra(extra: str) -> list[str]:
    """The distributions of ``talprov[extra]`` that are not installed (or not importable).

    Empty for an unknown extra. Never raises; reads only installed metadata.
    """
    missing = []
    for dist in _extras().get(extra, ()):
        modules = _top_level_modules().get(_normalized(dist))
        if modules:
            if not all(_importable(m) for m in modules):
                missing.append(dist)
        elif not _installed(dist):  # metadata without a module list: trust the metadata
            missing.append(dist)
    return missing


def _installed(dist: str) -> bool:
    try:
        distribution(dist)
    except PackageNotFoundError:
        return False
    return True


def require_extra(extra: str, *, where: str, what: str) -> None:
    """Raise ``ConfigError`` at ``where`` when ``talprov[extra]`` is not fully installed.

    The message names what needs it, the missing packages and the pip command.
    Idempotent; no network.
    """
    missing = missing_for_extra(extra)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtra(where, f"{what} needs {', '.join(missing)}, which {verb} not "
                                  f"installed; install its extra, e.g. pip install "
                                  f"'talprov[{extra}]'")


def extra_providing(module: str) -> str | None:
    """The extra whose packages provide top-level ``module`` (None when none does).

    Used to turn an unexpected ``ModuleNotFoundError`` into the pip command.
    """
    top = module.split(".", 1)[0]
    for extra, dists in sorted(_extras().items()):
        if extra in {"all", "test"}:
            continue
        for dist in dists:
            if top in _top_level_modules().get(_normalized(dist), ()) or (
                    _normalized(top) == _normalized(dist)):
                return extra
    return None

"""talprov.yaml: which provider instances exist, where state lives, the image factory.

Looked up from ``--config``, then ``TALPROV_CONFIG``, then ``./talprov.yaml``, then
``$XDG_CONFIG_HOME/talprov/config.yaml``. String values may use ``${env:NAME}`` and
``${file:PATH}`` references; resolved values are treated as secrets.

Every command checks the whole file's shape on load (unknown keys, provider
types, instance names, each instance's settings against its type's model, URLs
with a scheme), but resolves the references of a provider instance (and of the
``service`` and ``image_factory`` blocks) only when a command uses it, so an unset variable of an
instance nobody uses blocks nothing. ``talprov config check`` resolves them all.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from talprov.errors import (
    ConfigError,
    UniqueKeyLoader,
    describe_problem,
    did_you_mean,
    read_user_file,
    refuse_lone_surrogates,
    unknown_key_message,
    validate,
    written_flag,
    yaml_error,
)
from talprov.providers.errors import ca_file_problem
from talprov.registry import COMMON_INSTANCE_KEYS, config_model_of, installed_types
from talprov.secrets import check_references, has_reference, references_in, resolve_tree
from talprov.urls import credentials_problem, url_problem

DEFAULT_FACTORY_URL = "https://factory.talos.dev"
#: Instance names end up in tags, labels and URLs: a DNS label.
INSTANCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: A path the Image Factory's API answers (an image or PXE URL pasted whole, the
#: schematics or versions endpoint): image_factory.url is the base they are added
#: to. A schematic id is 64 hex digits; a mirror's own folders are never refused.
_FACTORY_ENDPOINT = re.compile(
    r"/(?:image|pxe)/[0-9a-f]{64}(?:/|$)|/(?:schematics|versions)/?$")

#: Settings that name a CA file a TLS client loads (AWS's verify_tls: a path or a bool).
CA_FILE_KEYS = frozenset({"ca_file", "verify_tls"})
#: Top-level keys whose references are resolved only when a command uses them.
LAZY_KEYS = ("providers", "service", "image_factory")


class ImageFactoryConfig(BaseModel):
    """Where Talos images come from; point ``url`` at a mirror for air-gapped sites."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
        if self.insecure and self.ca_file is not None:
            # As every provider type refuses it: which of the two was meant is unknown.
            raise ValueError("insecure and ca_file contradict each other")
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

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    type: str
    concurrency: int = Field(default=8, ge=1, le=256)

    @model_validator(mode="before")
    @classmethod
    def _misspelt_type(cls, data: Any) -> Any:
        # extra="allow" would let `tpye: aws` pass and report `type` as missing.
        if isinstance(data, dict) and "type" not in data:
            extras = [str(key) for key in data if key not in cls.model_fields]
            close = difflib.get_close_matches("type", extras, n=1, cutoff=0.6)
            if close:
                raise ValueError(f"{close[0]}: {unknown_key_message(close[0], ['type'])}")
        return data


class TalprovConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    store: str | None = None
    installation: str = Field(default="talprov", pattern=r"^[a-z0-9][-a-z0-9]{0,30}$")
    cache_dir: str | None = None
    image_factory: ImageFactoryConfig = Field(default_factory=ImageFactoryConfig)
    providers: dict[str, ProviderInstanceConfig] = Field(default_factory=dict)
    service: dict[str, Any] | None = None
    baremetal: dict[str, Any] | None = None


class LoadedConfig(BaseModel):
    """A parsed config and the file it came from (None when no file was found)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False)

    config: TalprovConfig
    path: Path | None
    #: The ``image_factory`` block as written, references unresolved.
    factory_raw: dict[str, Any] = Field(default_factory=dict)

    def image_factory(self) -> ImageFactoryConfig:
        """The ``image_factory`` block with its references resolved.

        Raises ``ConfigError`` naming file and key when a reference does not
        resolve or its value is invalid. Idempotent (files and variables are read
        again on each call).
        """
        if not has_reference(self.factory_raw):
            return self.config.image_factory
        return self._resolved_factory(self.factory_raw)

    def factory_url(self) -> str:
        """The Image Factory's URL, resolving nothing else of the block: a command
        that only points machines at the factory must work while its password is
        unset. Raises ``ConfigError`` as :meth:`image_factory` does when the URL
        itself is an unresolvable reference. Idempotent."""
        raw_url = self.factory_raw.get("url")
        if not has_reference(raw_url):
            return self.config.image_factory.url
        return self._resolved_factory({"url": raw_url}).url

    def _resolved_factory(self, raw: dict[str, Any]) -> ImageFactoryConfig:
        """``raw`` (the block, or a part of it) resolved, validated and its URL checked."""
        where = f"{self.path}: image_factory" if self.path else "image_factory"
        factory = validate(ImageFactoryConfig, self._resolve(raw, "image_factory"), where)
        _check_factory_url(factory, where)
        return factory

    def provider_block(self, name: str) -> dict[str, Any]:
        """The raw config block of provider instance ``name``.

        Raises ``ConfigError`` when no such instance is configured.
        """
        block = self.config.providers.get(name)
        if block is None:
            known = ", ".join(sorted(self.config.providers)) or "none configured"
            where = str(self.path) if self.path else "config"
            raise ConfigError(where, f"unknown provider {name!r} (configured: {known})"
                                     + did_you_mean(name, list(self.config.providers)))
        key = f"providers.{name}"
        resolved: dict[str, Any] = self._resolve(block.model_dump(), key)
        where = f"{self.path}: {key}" if self.path else key
        try:
            check_resolved_urls(resolved, where)
        except ConfigError as exc:
            # The file shows a reference, not the url: say whose value it was.
            raise ConfigError(exc.where, exc.message + _referenced_by(
                block.model_dump(), where, exc.where)) from None
        check_ca_files(resolved, where)
        return resolved

    def service_block(self) -> dict[str, Any] | None:
        """The ``service`` block with its references resolved (ConfigError when one fails)."""
        if self.config.service is None:
            return None
        resolved: dict[str, Any] = self._resolve(self.config.service, "service")
        return resolved

    def _resolve(self, node: Any, key: str) -> Any:
        where = f"{self.path}: {key}" if self.path else key
        return resolve_tree(node, where=where,
                            base_dir=self.path.parent if self.path else None)


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
    text = read_user_file(path, where, "config file")
    raw = parse_yaml_mapping(text, where)
    # Resolve per top-level key so errors read "FILE: store", the same
    # "file: field" shape as every other validation error.
    raw = {key: value if key in LAZY_KEYS else
           resolve_tree(value, where=f"{where}: {key}", base_dir=path.parent)
           for key, value in raw.items()}
    config = validate(TalprovConfig, raw, where, sep=": ")
    _check_factory_url(config.image_factory, f"{where}: image_factory")
    check_references(raw.get("image_factory"), where=f"{where}: image_factory")
    check_references(config.service, where=f"{where}: service")
    _check_listen((config.service or {}).get("listen"), f"{where}: service.listen")
    for name, block in config.providers.items():
        check_instance_shape(name, block.model_dump(), f"{where}: providers.{name}")
        _check_factory_use(config.image_factory, block.model_dump(),
                           f"{where}: providers.{name}")
    factory_raw = raw.get("image_factory")
    return LoadedConfig(config=config, path=path,
                        factory_raw=factory_raw if isinstance(factory_raw, dict) else {})


def _check_factory_use(factory: ImageFactoryConfig, block: dict[str, Any], where: str) -> None:
    """Refuse an instance setting that cannot work with ``factory`` when it has
    credentials (a type's ``factory_credentials_problem``, e.g. Proxmox's
    ``iso_transfer: download``): it would wait for the operator at every request.
    Raises ``ConfigError`` naming the instance's field. Pure."""
    authenticated = factory.username is not None or "@" in urlsplit(factory.url).netloc
    model = config_model_of(str(block.get("type"))) if authenticated else None
    problem_of = getattr(model, "factory_credentials_problem", None)
    problem = problem_of(block) if callable(problem_of) else None
    if problem is not None:
        field, message = problem
        raise ConfigError(f"{where}.{field}", message)


def check_instance_shape(name: str, block: dict[str, Any], where: str) -> None:
    """Check an instance block without resolving its references.

    The name, the type, secret references being well formed, every ``*url``
    having a scheme and host, and, when the type's module loads, the settings
    against its config model (a field holding a reference is judged once
    resolved, by the command that uses it). Raises ``ConfigError`` naming file
    and key. Idempotent; no network.
    """
    if not INSTANCE_NAME.fullmatch(name):
        raise ConfigError(where, "instance names are lowercase letters, digits and '-' "
                                 "(at most 63, starting and ending with a letter or digit)")
    type_name = block.get("type")
    known = {t.name for t in installed_types()}
    if type_name not in known:
        raise ConfigError(f"{where}.type", f"unknown provider type {type_name!r} "
                          f"(installed: {', '.join(sorted(known)) or 'none'})"
                          + did_you_mean(str(type_name), sorted(known)))
    check_references(block, where=where)
    _check_urls(block, where)
    check_ca_files(block, where)
    # Without the type's extra the model still comes from its SDK-free module, so a
    # misplaced key is refused before the extra is installed, not after.
    model = config_model_of(str(type_name))
    if model is None:
        return  # a broken plugin: said by the command that uses the instance
    body = {k: v for k, v in block.items() if k not in COMMON_INSTANCE_KEYS}
    validate_unresolved(model, body, where)
    _check_url_credentials(block, where)


def validate_unresolved(model: type[BaseModel], body: Any, where: str) -> None:
    """Check ``body`` against ``model`` before its references are resolved: a field
    holding a reference is judged once resolved; a misspelt key and a block-level
    rule (token_id with token_secret) are judged now. Raises ``ConfigError`` naming
    ``where`` and the field, never a value. Pure."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        # A field holding a reference -- or a rule over a part that holds one (a
        # token's length, checked on the token dict) -- waits for the resolved value.
        errors = [e for e in exc.errors() if e["type"] == "extra_forbidden"
                  or not has_reference(e.get("input"))
                  or (not e["loc"] and _whatever_the_references(model, body, e["msg"]))]
        if errors:
            path, message = describe_problem(errors, model=model)
            raise ConfigError(f"{where}.{path}" if path else where, message) from None


#: What a reference stands for while a block-level rule is tried without its value.
_STAND_IN = "x" * 64


def _whatever_the_references(model: type[BaseModel], body: Any, message: str) -> bool:
    """Whether the block-level rule that said ``message`` of ``body`` says it again
    with every reference replaced by a stand-in value: a rule over which settings
    are given (``insecure`` with ``ca_file``) does not wait for a password's value;
    one over a referenced value (a token's length) does. Pure."""
    try:
        model.model_validate(_stand_ins(body))
    except ValidationError as exc:
        return any(not e["loc"] and e["msg"] == message for e in exc.errors())
    return False


def _stand_ins(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _stand_ins(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_stand_ins(value) for value in node]
    return _STAND_IN if has_reference(node) else node


def _string_settings(node: Any, where: str) -> Iterator[tuple[str, str, str]]:
    """(where.key, key, value) of every string setting of ``node`` and its nested
    blocks, references included. Pure."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _string_settings(value, f"{where}.{key}")
        elif isinstance(key, str) and isinstance(value, str):
            yield f"{where}.{key}", key, value


def _written_settings(node: Any, where: str) -> Iterator[tuple[str, str, str]]:
    """The :func:`_string_settings` of ``node`` that hold no reference (one that
    does is judged once resolved). Pure."""
    return (setting for setting in _string_settings(node, where)
            if not has_reference(setting[2]))


def _check_urls(node: Any, where: str, *, echo: bool = True) -> None:
    """Refuse any ``*url`` of ``node`` that :func:`url_problem` finds wrong; without
    ``echo`` (resolved references' values) the message repeats no part of it."""
    for field, key, value in _written_settings(node, where):
        problem = url_problem(value, echo=echo) if key.endswith("url") else None
        if problem is not None:
            raise ConfigError(field, problem)


def _check_url_credentials(block: dict[str, Any], where: str) -> None:
    """Refuse a user or password in any ``*url`` of the provider instance ``block``,
    saying where its type's credentials go (:func:`credentials_problem`). Pure."""
    for field, key, value in _written_settings(block, where):
        problem = (credentials_problem(value, str(block.get("type")))
                   if key.endswith("url") else None)
        if problem is not None:
            raise ConfigError(field, problem)


def _referenced_by(node: Any, where: str, field: str) -> str:
    """`` (the value of ${env:URL})`` when the setting ``field`` (as
    :func:`_string_settings` names it under ``where``) of ``node`` is written as a
    reference; "" otherwise. Names the reference only, never a value. Pure."""
    for setting, _key, value in _string_settings(node, where):
        if setting == field and has_reference(value):
            return f" (the value of {', '.join(references_in(value))})"
    return ""


def check_resolved_urls(block: dict[str, Any], where: str) -> None:
    """Every rule of :func:`check_instance_shape` for the ``*url`` settings of the
    provider instance ``block``, on its resolved values: a url given as a
    reference (``${env:URL}``) is judged here, once resolved, not at load. Raises
    ``ConfigError`` naming ``where`` and the key, never the value. Pure."""
    _check_urls(block, where, echo=False)  # a value may be a misplaced secret
    _check_url_credentials(block, where)


def check_ca_files(node: Any, where: str) -> None:
    """Refuse every ``ca_file`` of ``node`` (a provider instance's block, the
    ``image_factory`` block) that a TLS client could not load: missing, a
    directory, unreadable, or without a PEM certificate. One rule for every
    provider type (a plugin's ``ca_file`` too), so that no driver meets the file's
    trouble as an SSL or OS error of its own. Raises ``ConfigError`` naming the key
    and the file. Reads the files; idempotent."""
    for field, key, value in _written_settings(node, where):
        if key == "verify_tls" and written_flag(value) is not None:
            continue  # a quoted flag, which AwsConfig reads as the bool, is no file
        if key in CA_FILE_KEYS and not value.strip():
            raise ConfigError(field, "empty: name a PEM file of CA certificates, or "
                                     "leave the setting out for the system's CAs")
        problem = ca_file_problem(value) if key in CA_FILE_KEYS else None
        if problem is not None:
            raise ConfigError(field, f"{value}: {problem}")


def _check_factory_url(factory: ImageFactoryConfig, where: str) -> None:
    """Refuse a factory URL that cannot be used, credentials both written into
    it and given as ``username``/``password`` (which pair would win is nowhere
    obvious), and a ``ca_file`` no TLS client could load (:func:`check_ca_files`).
    Raises ``ConfigError`` naming ``image_factory.url`` or ``.ca_file``. Reads the
    CA file."""
    if not factory.url.strip():
        # Left out, the setting has a default: say so, as an empty ca_file's message does.
        raise ConfigError(f"{where}.url", f"empty: leave the setting out for "
                          f"{DEFAULT_FACTORY_URL}, or give a mirror's URL, e.g. "
                          "https://factory.example.com")
    _check_urls({"url": factory.url}, where)
    check_ca_files({"ca_file": factory.ca_file}, where)
    if not has_reference(factory.url) and _FACTORY_ENDPOINT.search(
            urlsplit(factory.url).path):
        # The client adds /schematics, /image/..., /pxe/... to this URL: a mirror
        # under a path prefix works, but a URL already naming one of those (an image
        # URL pasted whole) would be doubled into URLs that cannot exist.
        raise ConfigError(f"{where}.url", "the factory's base URL, without /image, /pxe, "
                                          "/schematics or /versions, e.g. "
                                          "https://factory.example.com")
    if (factory.username is not None and not has_reference(factory.url)
            and "@" in urlsplit(factory.url).netloc):
        raise ConfigError(f"{where}.url", "credentials are written into the URL and given "
                                          "as username/password: keep one of the two")


#: ``HOST:PORT``, or ``[ADDRESS]:PORT`` for IPv6.
_LISTEN = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(?P<port>\d+)$")


def split_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[ADDRESS]:PORT`` for IPv6) as (host without brackets, port).

    Raises ``ValueError`` saying what is wrong (no port, a port above 65535) in
    words a person can act on. Pure.
    """
    match = _LISTEN.fullmatch(text)
    if match is None:
        raise ValueError(f"expected HOST:PORT ([ADDRESS]:PORT for IPv6), e.g. "
                         f"127.0.0.1:8080, got {text!r}")
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return match["host"].strip("[]"), port


def _check_listen(value: Any, where: str) -> None:
    """Refuse a ``service.listen`` that no command could bind, when the config is
    read (one that is a secret reference is judged once resolved, by serve)."""
    if not isinstance(value, str) or has_reference(value):
        return  # a wrong type is the service block's own validation's to name
    try:
        split_listen(value)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse a single YAML mapping; errors name the file and line, or the field of
    a string that is not valid Unicode (:func:`refuse_lone_surrogates`)."""
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(where, "expected a mapping at the top level")
    refuse_lone_surrogates(data, where)
    return data

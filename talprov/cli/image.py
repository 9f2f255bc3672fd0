"""``talprov image …``: schematic ids, asset URLs and downloads."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from talprov.cli.app import App, handle_errors, pass_app, say
from talprov.cli.output import emit, output_option
from talprov.errors import ConfigError, file_label, read_named_file
from talprov.providers.errors import AuthError, InvalidRequest, ProviderError
from talprov.providers.types import Arch, talos_version_problem
from talprov.requestfile import load_request_file
from talprov.talos.assets import PLATFORMS, AssetKind, Platform
from talprov.talos.cache import public_url
from talprov.talos.factory import (
    ImageFactory,
    asset_names_for,
    credentials_refused,
    has_credentials,
    images_for,
)
from talprov.talos.schematic import Schematic


def _schematic(path: Path | None, request: Path | None) -> tuple[Schematic, str | None]:
    if (path is None) == (request is None):
        raise ConfigError("-f/--request", "give exactly one of -f SCHEMATIC.yaml or --request")
    if path is not None:
        return Schematic.from_yaml(read_named_file(path, "schematic"), file_label(path)), None
    assert request is not None
    req = load_request_file(request)
    return Schematic.from_request(req), req.talos_version


def _version(version: str | None) -> str:
    """A checked Talos version; raises ``ConfigError`` for a missing or malformed one.

    Checked here because the URL builders reject a bad version per asset, which
    ``urls`` would otherwise report as "no assets" with exit 0.
    """
    if not version:
        raise ConfigError("--version", "required with -f")
    problem = talos_version_problem(version)
    if problem is not None:
        raise ConfigError("--version", problem)
    return version


@click.group()
def image() -> None:
    """Talos images: schematic ids, Image Factory URLs, local cache."""


@image.command("id")
@click.option("-f", "--file", "path", type=click.Path(path_type=Path),
              help="An Image Factory schematic YAML (- for stdin).")
@click.option("--request", type=click.Path(path_type=Path), help="Or a request file (- for stdin).")
@click.option("--local", is_flag=True,
              help="Print the id computed here, asking no factory, also when the factory "
                   "has credentials (what an unauthenticated factory and Omni compute; "
                   "the name of a bare-metal mirror's folder).")
@pass_app
@handle_errors
def image_id(app: App, path: Path | None, request: Path | None, local: bool) -> None:
    """Print the schematic id talprov uses in the factory's URLs.

    Computed here exactly as the Image Factory does; with factory credentials
    configured, the schematic is registered (idempotent) and the id the factory
    answers is printed: an authenticated factory names it with its owner in it.
    """
    schematic, _ = _schematic(path, request)
    if local:
        click.echo(schematic.id())
        return
    with _credentials_named(app), _factory_naming(app) as (_, sid):
        click.echo(sid(schematic))


@contextlib.contextmanager
def _credentials_named(app: App) -> Iterator[None]:
    """A 401/403 of the factory inside the block becomes ``ConfigError`` naming the
    setting to fix (image_factory.password, or the url's user:password@), as
    ``config check --connect`` names it."""
    try:
        yield
    except AuthError as exc:
        username_set = app.config.factory_raw.get("username") is not None
        raise credentials_refused(exc, username_set=username_set) from None


@contextlib.contextmanager
def _factory_naming(app: App) -> Iterator[tuple[ImageFactory, Callable[[Schematic], str]]]:
    """A factory client to name asset URLs with, and how it names a schematic: the
    local id when the factory has no credentials (no factory is asked, and none
    of its settings need to resolve), else the id it answers when registered (an
    authenticated factory puts the owner in). Raises what ``register`` raises,
    and ``InstanceUnavailable`` when the credentials cannot be resolved."""
    # A username whose password did not resolve counts: the URLs computed without
    # it would name an id the factory does not serve.
    if has_credentials(app.runtime) or app.config.factory_raw.get("username") is not None:
        factory = images_for(app.runtime)  # shared by the runtime: not closed here
        yield factory, factory.register
        return
    with asset_names_for(app.runtime) as names:
        yield names, Schematic.id


@image.command("urls")
@click.option("-f", "--file", "path", type=click.Path(path_type=Path),
              help="Schematic YAML (- for stdin).")
@click.option("--request", type=click.Path(path_type=Path), help="Or a request file (- for stdin).")
@click.option("--version", "talos_version", help="Talos version, e.g. v1.13.9.")
@click.option("--arch", type=click.Choice([a.value for a in Arch]), default="amd64",
              show_default=True, help="CPU architecture of the assets.")
@click.option("--secure-boot", is_flag=True, help="Secure Boot assets.")
@click.option("--local", is_flag=True,
              help="Ask no factory: the version is not checked against its list, and the "
                   "schematic is named by the id computed here (which a factory with "
                   "credentials does not serve).")
@output_option
@pass_app
@handle_errors
def urls(app: App, path: Path | None, request: Path | None, talos_version: str | None,
         arch: str, secure_boot: bool, local: bool, output: str) -> None:
    """Print the Image Factory URL of every platform asset for a schematic.

    The factory is asked which Talos versions it offers: one it does not offer
    is refused (exit 2); when it cannot be asked, stderr says the version was
    not checked. With credentials configured the schematic is registered and
    named by the id the factory answers. --local asks no factory.
    """
    schematic, req_version = _schematic(path, request)
    version = _version(talos_version or req_version)
    if local:
        say(f"Talos {version} was not checked: --local asks no Image Factory whether "
            "it offers it", level=logging.WARNING)
        with asset_names_for(app.runtime) as names:
            rows = asset_rows(names, schematic.id(), version, Arch(arch), secure_boot)
    else:
        with _credentials_named(app), _factory_naming(app) as (factory, sid):
            _check_offered(factory, version)
            rows = asset_rows(factory, sid(schematic), version, Arch(arch), secure_boot)
    emit(rows, output, columns=("platform", "kind", "url"))


def _check_offered(factory: ImageFactory, version: str) -> None:
    """Refuse a ``version`` the factory does not offer (``ConfigError`` at --version);
    one it cannot be asked about is said on stderr, and let through: the URLs are
    computed here all the same. Asks the factory's GET /versions."""
    try:
        offered = factory.versions()
    except ProviderError as exc:
        say(f"Talos {version} was not checked: {exc}", level=logging.WARNING)
        return
    if version not in offered:
        newest = f" (its newest: {offered[-1]})" if offered else ""
        raise ConfigError("--version", (
            f"the Image Factory {public_url(factory.base_url)} does not offer Talos "
            f"{version}{newest}; --local prints the URLs without asking it"))


ASSET_CHOICES = sorted(
    {f"{p.value}-{k.value}" for p in Platform for k in (PLATFORMS[p].default_kind, AssetKind.DISK)}
    | {"metal-kernel", "metal-initramfs"}
)


def asset_rows(factory: ImageFactory, sid: str, version: str, arch: Arch,
               secure_boot: bool) -> list[dict[str, str]]:
    """Every asset the factory has for this schematic, version, arch and boot mode."""
    rows = []
    for choice in ASSET_CHOICES:
        platform, _, kind = choice.partition("-")
        try:
            url = factory.image_url(sid, version, platform, arch, secure_boot, AssetKind(kind))
        except InvalidRequest:
            continue  # not built for this arch or boot mode
        rows.append({"platform": platform, "kind": kind, "url": url})
    with contextlib.suppress(InvalidRequest):
        rows.append({"platform": "metal", "kind": "pxe",
                     "url": factory.pxe_script_url(sid, version, arch, secure_boot)})
    return rows


@image.command("pull")
@click.option("-f", "--file", "path", type=click.Path(path_type=Path),
              help="Schematic YAML (- for stdin).")
@click.option("--request", type=click.Path(path_type=Path), help="Or a request file (- for stdin).")
@click.option("--version", "talos_version", help="Talos version, e.g. v1.13.9.")
@click.option("--asset", required=True, type=click.Choice(ASSET_CHOICES),
              help="PLATFORM-KIND, e.g. aws-disk, nocloud-iso, metal-kernel.")
@click.option("--arch", type=click.Choice([a.value for a in Arch]), default="amd64",
              show_default=True, help="CPU architecture of the assets.")
@click.option("--secure-boot", is_flag=True, help="The Secure Boot variant of the asset.")
@pass_app
@handle_errors
def pull(app: App, path: Path | None, request: Path | None, talos_version: str | None,
         asset: str, arch: str, secure_boot: bool) -> None:
    """Register the schematic and download one asset into the local cache.

    Idempotent: a cached, checksummed asset is not downloaded again; an
    interrupted download resumes. Prints the cached file's path.
    """
    schematic, req_version = _schematic(path, request)
    version = _version(talos_version or req_version)
    factory = images_for(app.runtime)
    with _credentials_named(app):
        sid = factory.register(schematic)
        platform, _, kind = asset.partition("-")
        url = factory.image_url(sid, version, platform, Arch(arch), secure_boot,
                                AssetKind(kind))
        click.echo(str(factory.download(url, progress=app.runtime.progress)))

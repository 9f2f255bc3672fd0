"""Image Factory client: register schematics, name assets, download them, find official AMIs.

The base URL is configurable so that an air-gapped site can point at a mirror
(``/schematics``, ``/image/<id>/<version>/<file>`` and ``/pxe/<id>/<version>/<file>``
are the factory's own paths). HTTP failures become talprov errors: 401/403
``AuthError``, 404 ``NotFound`` (naming the asset), 429/5xx and timeouts
``Transient``, other 4xx ``InvalidRequest``. URLs are reported without
credentials or query strings.

An authenticated factory (the Enterprise edition, HTTP Basic credentials given as
``auth`` or in the URL) sets the schematic's ``owner`` to the user before naming
it, so its id is not the locally computed one: with credentials configured the
client uses, and remembers, the id the factory answers, after checking that the
normalized schematic it answers is ours plus the ``owner`` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import cast
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from talprov.errors import ConfigError
from talprov.logs import tls_off_warning
from talprov.providers.errors import (
    UNUSABLE_UNTIL_FIXED,
    AuthError,
    InstanceUnavailable,
    InvalidRequest,
    NotFound,
    ProviderError,
    Transient,
    connection_failure,
    endpoint_origin,
    retry_after_seconds,
)
from talprov.providers.protocol import Runtime
from talprov.providers.types import Arch
from talprov.talos.assets import AssetKind, Platform, asset_name, check_ids, pxe_script_name
from talprov.talos.cache import DownloadCache, public_url
from talprov.talos.progress import Progress
from talprov.talos.schematic import Schematic

DEFAULT_CLOUD_IMAGES_URL = (
    "https://github.com/siderolabs/talos/releases/download/{version}/cloud-images.json"
)
_ERROR_BODY_LIMIT = 300
log = logging.getLogger(__name__)
_SCHEMATIC_ID = re.compile(r"^[0-9a-f]{64}$")


class SchematicIdMismatch(ProviderError):
    """The factory named a schematic differently from the local computation."""

    permanent = True


class CloudImage(BaseModel):
    """One entry of a Talos release's ``cloud-images.json`` (e.g. an official AMI)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    cloud: str
    version: str
    region: str
    arch: str
    type: str = ""
    id: str


def unreachable(url: str, exc: httpx.TransportError) -> str:
    """Why the factory at ``url`` could not be asked, in words (as every driver
    says it: :func:`connection_failure`), naming its scheme://host:port, never
    credentials, a path or an httpx class. Pure."""
    return f"Image Factory at {endpoint_origin(url)} unreachable: {connection_failure(exc)}"


def credentials_refused(exc: AuthError, *, username_set: bool) -> ConfigError:
    """The factory's 401/403 as the setting to fix: ``image_factory.password`` when
    the credentials are settings of their own (``username_set``), else the
    ``user:password@`` of ``image_factory.url``. Names no credential. Pure."""
    field = "image_factory.password" if username_set else "image_factory.url"
    named = ("image_factory.username/password" if username_set
             else "the user:password@ of image_factory.url")
    status = re.search(r"HTTP \d+", str(exc))
    return ConfigError(field, f"the Image Factory refused the credentials of {named}"
                              + (f" ({status.group(0)})" if status else ""))


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Turn an unsuccessful response into the talprov error for it; ``what`` names the thing."""
    status = response.status_code
    if status < 400:
        return
    # Bounded (a broken proxy's "Retry-After: 99999999" must not park work for years),
    # and the HTTP-date form read too.
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status in (401, 403):
        raise AuthError(f"{what}: the Image Factory refused access (HTTP {status})")
    if status == 404:
        raise NotFound(f"{what}: not found on the Image Factory (HTTP 404)")
    if status == 429 or status >= 500:
        raise Transient(f"{what}: Image Factory answered HTTP {status}", retry_after=retry_after)
    detail = ""
    with contextlib.suppress(httpx.HTTPError):
        detail = response.read().decode(errors="replace").strip()[:_ERROR_BODY_LIMIT]
    raise InvalidRequest(
        f"{what}: Image Factory answered HTTP {status}" + (f": {detail}" if detail else "")
    )


class _FactoryAuth(httpx.Auth):
    """HTTP Basic credentials sent to the factory's own origins only.

    The same client fetches release files from elsewhere (``cloud-images.json``):
    they must never see the factory's password.
    """

    def __init__(self, username: str, password: str, origins: set[tuple[str, str, int | None]]):
        self._basic = httpx.BasicAuth(username, password)
        self._origins = origins

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) in self._origins:
            yield from self._basic.auth_flow(request)
        else:
            yield request


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(``url`` without credentials and trailing ``/``, the (user, password)
    written into it, percent-decoded, or None). Only the ``user:password@`` part
    is taken out: the rest stays as written (Proxmox's ISO names and the download
    cache's keys are hashes of asset URLs, so a normalized host or port would
    orphan what earlier versions stored). Pure; never raises."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url.rstrip("/"), None
    bare = urlunsplit(parts._replace(netloc=host)).rstrip("/")
    user, _, password = userinfo.partition(":")
    return bare, (unquote(user), unquote(password))


def has_credentials(runtime: Runtime) -> bool:
    """Whether ``runtime``'s Image Factory is given credentials (those written
    into its URL were moved to ``factory_auth`` by the CLI): an authenticated
    factory names schematics with their owner, so no id can be computed without
    asking it. Pure."""
    return runtime.factory_auth is not None


def httpx_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a talprov TLS setting: a CA bundle path becomes a
    context built on it (httpx deprecates a path). Raises OSError or ssl.SSLError
    for a CA file that cannot be read; idempotent."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class ImageFactory:
    """A client of one Image Factory (or mirror) with a local download cache.

    Thread-safe. ``verify`` is httpx's: ``True`` (system CAs), a CA bundle path,
    or ``False`` (not recommended). ``pxe_base_url`` defaults to ``base_url``
    (the public factory also serves PXE scripts on ``pxe.factory.talos.dev``).
    ``auth`` is (username, password) of an authenticated factory, or written into
    ``base_url``/``pxe_base_url``; it is sent to their origins only. Raises
    ``ValueError`` when those places hold different credentials.
    """

    def __init__(
        self,
        base_url: str,
        cache_dir: Path,
        verify: bool | str = True,
        timeout: float = 30,
        *,
        pxe_base_url: str | None = None,
        cloud_images_url: str = DEFAULT_CLOUD_IMAGES_URL,
        transport: httpx.BaseTransport | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        # Credentials written into a URL become the client's: every asset URL is
        # named by the bare URL, since drivers hand those to machines and nodes.
        self.base_url, in_url = split_credentials(base_url)
        self.pxe_base_url, in_pxe_url = split_credentials(pxe_base_url or base_url)
        given = {pair for pair in (auth, in_url, in_pxe_url) if pair is not None}
        if len(given) > 1:
            # Which pair would win is nowhere obvious: refuse (as the config does).
            raise ValueError("the Image Factory's credentials differ between auth, "
                             "base_url and pxe_base_url: give them once")
        auth = given.pop() if given else None
        self.cloud_images_url = cloud_images_url
        self.cache_dir = Path(cache_dir)
        origins = {_origin(httpx.URL(self.base_url)), _origin(httpx.URL(self.pxe_base_url))}
        self._client = httpx.Client(
            verify=httpx_verify(verify), timeout=timeout, follow_redirects=True,
            transport=transport,
            auth=_FactoryAuth(*auth, origins) if auth else None,
        )
        self.authenticated = auth is not None
        self.cache = DownloadCache(self.cache_dir, self._client, raise_for_status)
        self._registered: dict[str, str] = {}  # local id -> the id the factory answered
        self._cloud_images: dict[str, list[CloudImage]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ImageFactory:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageFactory({public_url(self.base_url)!r})"

    # ------------------------------------------------------------------ schematics

    def register(self, schematic: Schematic) -> str:
        """Make sure the factory knows ``schematic``; returns the id the factory gave it.

        Idempotent (the factory answers the same id for the same schematic; a
        schematic already registered by this client is not posted again). That
        is the local id, except on an authenticated factory (see the module
        docstring). Raises ``SchematicIdMismatch`` if the factory's id differs
        from the local one for another reason, ``InvalidRequest`` if the factory
        rejects the schematic, and ``AuthError``/``Transient`` for access and
        availability problems.
        """
        local_id = schematic.id()
        with self._lock:
            if local_id in self._registered:
                return self._registered[local_id]
        what = f"schematic {local_id}"
        try:
            response = self._client.post(
                f"{self.base_url}/schematics",
                content=schematic.canonical_yaml(),
                headers={"Content-Type": "application/yaml"},
            )
        except httpx.TransportError as exc:
            raise Transient(f"{what}: {unreachable(self.base_url, exc)}") from None
        raise_for_status(response, what)
        try:
            answer = response.json()
            remote_id = str(answer["id"])
            normalized = answer.get("schematic")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Transient(f"{what}: the Image Factory answered without an id") from None
        if remote_id != local_id and not self._owned_copy(schematic, remote_id, normalized):
            raise SchematicIdMismatch(
                f"the Image Factory named the schematic {remote_id}, talprov computed {local_id}; "
                "the factory may be newer than talprov's schematic model"
            )
        with self._lock:
            self._registered[local_id] = remote_id
        return remote_id

    def _owned_copy(self, schematic: Schematic, remote_id: str, normalized: object) -> bool:
        """Whether ``remote_id`` names ``schematic`` with an owner set by an authenticated factory.

        Factories since 2026-05 answer the normalized schematic: it must be ours
        with one ``owner:`` line in front and hash to ``remote_id``. Older ones
        answer the id alone, which is then taken as given (credentials configured).
        """
        if not self.authenticated or not _SCHEMATIC_ID.fullmatch(remote_id):
            return False
        if normalized is None:
            return True
        if not isinstance(normalized, str):
            return False
        owner_line, _, rest = normalized.partition("\n")
        return (
            owner_line.startswith("owner: ")
            and rest.encode() == schematic.canonical_yaml()
            and hashlib.sha256(normalized.encode()).hexdigest() == remote_id
        )

    def answered_id(self, schematic: Schematic) -> str | None:
        """The id the factory gave ``schematic`` when this client registered it, else None."""
        with self._lock:
            return self._registered.get(schematic.id())

    def versions(self) -> list[str]:
        """The Talos versions the factory offers (its ``GET /versions``): what
        ``config check --connect`` asks to know the factory answers at this URL
        and TLS setting (credentials are sent, though the factory may not need
        them for this call). Raises ``AuthError`` when it refuses them,
        ``Transient`` when it cannot be reached or answers something else.
        Idempotent; nothing is cached."""
        what = "the list of Talos versions"
        try:
            response = self._client.get(f"{self.base_url}/versions")
        except httpx.TransportError as exc:
            raise Transient(f"{what}: {unreachable(self.base_url, exc)}") from None
        raise_for_status(response, what)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, list) or not all(isinstance(v, str) for v in answer):
            raise Transient(f"{what}: the Image Factory answered something else than a list")
        return answer

    def has_asset(self, url: str) -> bool | None:
        """Whether the factory serves ``url`` (a HEAD, as the factory's HTTP frontend
        routes it): True, False for 404, None when it cannot tell (unreachable,
        another status). Never raises; downloads nothing.
        """
        try:
            response = self._client.head(url)
        except httpx.HTTPError:
            return None
        if response.status_code == 404:
            return False
        return True if response.is_success else None

    # ------------------------------------------------------------------ asset URLs

    def asset_url(self, schematic_id: str, version: str, filename: str) -> str:
        """The URL of any file under ``/image/<id>/<version>/``."""
        check_ids(schematic_id, version)
        return f"{self.base_url}/image/{schematic_id}/{version}/{filename}"

    def image_url(
        self,
        schematic_id: str,
        version: str,
        platform: Platform | str,
        arch: Arch | str,
        secure_boot: bool = False,
        kind: AssetKind | None = None,
    ) -> str:
        """The URL of the platform's boot asset (e.g. ``aws-amd64.raw.xz``, ``vmware-amd64.ova``).

        Raises ``InvalidRequest`` for an unknown platform, an architecture the
        platform lacks at ``version``, or a secure boot variant the factory does not build.
        """
        try:
            name = asset_name(Platform(platform), Arch(arch), version, kind,
                              secure_boot=secure_boot)
        except ValueError:
            raise InvalidRequest(f"unknown platform {platform!r} or arch {arch!r}") from None
        return self.asset_url(schematic_id, version, name)

    def kernel_url(self, schematic_id: str, version: str, arch: Arch | str) -> str:
        """The URL of ``kernel-<arch>``."""
        return self.image_url(schematic_id, version, Platform.METAL, arch, kind=AssetKind.KERNEL)

    def initramfs_url(self, schematic_id: str, version: str, arch: Arch | str) -> str:
        """The URL of ``initramfs-<arch>.xz``."""
        return self.image_url(schematic_id, version, Platform.METAL, arch, kind=AssetKind.INITRAMFS)

    def pxe_script_url(
        self, schematic_id: str, version: str, arch: Arch | str, secure_boot: bool = False
    ) -> str:
        """The URL of the iPXE script ``/pxe/<id>/<version>/metal-<arch>[-secureboot]``."""
        check_ids(schematic_id, version)
        name = pxe_script_name(Arch(arch), version, secure_boot=secure_boot)
        return f"{self.pxe_base_url}/pxe/{schematic_id}/{version}/{name}"

    # ------------------------------------------------------------------ downloads

    def download(
        self, url: str, progress: Progress | None = None, expected_sha256: str | None = None
    ) -> Path:
        """The local path of ``url``'s content, downloaded into the cache if needed.

        Idempotent: later calls (from any thread or process sharing ``cache_dir``)
        return the cached file without network access. Resumes interrupted
        downloads. Raises ``ChecksumMismatch`` (a ``Transient``) when
        ``expected_sha256`` does not match, ``NotFound`` naming the asset,
        ``AuthError``, or ``Transient``.
        """
        return self.cache.fetch(url, progress=progress, expected_sha256=expected_sha256)

    def sha256(self, path: Path) -> str:
        """The sha256 recorded for a file returned by :meth:`download`."""
        return self.cache.sha256_of(path)

    # ------------------------------------------------------------------ official images

    def cloud_images(self, version: str) -> list[CloudImage]:
        """The release's ``cloud-images.json`` entries (cached: release files never change).

        Raises ``NotFound`` when the release has no such file, ``Transient`` for a
        malformed one or network trouble.
        """
        with self._lock:
            if version in self._cloud_images:
                return self._cloud_images[version]
        url = self.cloud_images_url.format(version=version)
        path = self.download(url)
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, list):
                raise TypeError("not a list")
            images = [CloudImage.model_validate(entry) for entry in raw]
        except (ValueError, TypeError, ValidationError):
            path.unlink(missing_ok=True)  # do not keep a bad copy around
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
            raise Transient(f"{public_url(url)}: not a valid cloud-images.json") from None
        with self._lock:
            self._cloud_images[version] = images
        return images

    def official_ami(self, version: str, region: str, arch: Arch | str) -> str | None:
        """The official Talos AMI id for the region and arch, or None if there is none."""
        for image in self.cloud_images(version):
            if image.cloud == "aws" and image.region == region and image.arch == str(arch):
                return image.id
        return None


_MEMO_KEY = "talprov.talos.image_factory"
_memo_lock = threading.Lock()


class UnusableFactory:
    """Stands in a runtime's memo for a factory whose settings could not be
    resolved (an unset ``${env:...}`` password): :func:`images_for` raises
    ``problem``, naming the setting, each time it is asked."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def factory_unusable(runtime: Runtime, problem: str) -> None:
    """Make every later :func:`images_for` of ``runtime`` fail with ``problem`` (a
    sentence naming the setting, never its value), while the provisions that need
    no image, deletions and listings go on."""
    # The factory first: the problem alone names a setting, not what it stops.
    told = (f"the Image Factory {public_url(runtime.factory_url)} is "
            f"{UNUSABLE_UNTIL_FIXED}: {problem}")
    with _memo_lock:
        runtime.memo[_MEMO_KEY] = UnusableFactory(told)


def asset_names_for(runtime: Runtime) -> ImageFactory:
    """A client of ``runtime``'s Image Factory for naming asset URLs only: built
    without its credentials, so it works while they cannot be resolved. Its
    ``*_url`` methods join the bare URL with the id they are given and ask no
    factory; that id is the locally computed one only for a factory without
    credentials (an authenticated one answers another: ask :func:`images_for`'s
    ``register``). Close it after use. Never raises."""
    return ImageFactory(base_url=runtime.factory_url, cache_dir=runtime.cache_dir / "images",
                        verify=runtime.factory_verify_tls)


def images_for(runtime: Runtime) -> ImageFactory:
    """The Image Factory client of ``runtime``, built from its settings on first use.

    One client per runtime (its download cache and registered schematics are
    shared by every provider instance of the process); building it warns when
    ``image_factory.insecure`` turned TLS verification off. Raises
    ``InstanceUnavailable`` when the factory's settings could not be resolved
    (:func:`factory_unusable`): a request waits for the operator's fix.
    """
    with _memo_lock:
        found = runtime.memo.get(_MEMO_KEY)
        if isinstance(found, UnusableFactory):
            raise InstanceUnavailable(found.problem)  # names image_factory.<key> itself
        if found is None:
            if runtime.factory_verify_tls is False:
                # Said where the factory is first used, once per runtime (its client
                # is kept), as an instance's insecure setting is said by its command.
                log.warning(tls_off_warning(
                    f"the Image Factory {public_url(runtime.factory_url)}",
                    "image_factory.insecure: true"))
            found = ImageFactory(base_url=runtime.factory_url,
                                 cache_dir=runtime.cache_dir / "images",
                                 verify=runtime.factory_verify_tls,
                                 auth=runtime.factory_auth)
            runtime.memo[_MEMO_KEY] = found
        # Only this module writes the key: an ImageFactory or a stand-in given to
        # use_images().
        return cast(ImageFactory, found)


def use_images(runtime: Runtime, factory: ImageFactory) -> None:
    """Make ``factory`` the Image Factory client of ``runtime`` (tests give stand-ins)."""
    with _memo_lock:
        runtime.memo[_MEMO_KEY] = factory

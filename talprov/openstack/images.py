"""How a Talos image reaches Glance.

The Image Factory's ``openstack-<arch>.raw.xz`` for the request's schematic and
Talos version is downloaded (into the shared cache), decompressed once next to
it, and uploaded to Glance once, as ``talos-<version>-<arch>-<schematic[:12]>``
with properties that say exactly what it is (``talprov_schematic`` holds the full
id). Every later request finds it by that name and those properties before
anything is downloaded, so all machines of a schematic+version share one image.

Inside one process a lock per image serialises uploads; a crash mid-upload
leaves a ``queued`` image that the next attempt deletes and uploads again.
"""

from __future__ import annotations

import lzma
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from talprov.openstack.client import OpenStackClient
from talprov.openstack.config import OpenStackConfig
from talprov.providers.errors import InvalidRequest, Transient
from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest
from talprov.talos.assets import Platform
from talprov.talos.factory import images_for
from talprov.talos.progress import Progress
from talprov.talos.schematic import Schematic

SCHEMATIC_PROPERTY = "talprov_schematic"
VERSION_PROPERTY = "talprov_talos_version"
ARCH_PROPERTY = "talprov_arch"
GLANCE_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
CHUNK = 4 * 1024 * 1024

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


@dataclass(frozen=True)
class ImageKey:
    """What identifies one Talos image in Glance."""

    version: str
    arch: str
    schematic_id: str

    @property
    def name(self) -> str:
        return f"talos-{self.version}-{self.arch}-{self.schematic_id[:12]}"

    def properties(self, config: OpenStackConfig) -> dict[str, str]:
        """The Glance properties talprov sets (and looks for) on the image."""
        firmware = config.firmware
        if firmware == "auto":
            firmware = "uefi" if self.arch == "arm64" else "bios"
        return {
            "hw_firmware_type": firmware,
            "architecture": GLANCE_ARCH[self.arch],
            "os_distro": "talos",
            "os_version": self.version,
            SCHEMATIC_PROPERTY: self.schematic_id,
            VERSION_PROPERTY: self.version,
            ARCH_PROPERTY: self.arch,
        }

    def matches(self, image: Any) -> bool:
        props = getattr(image, "properties", None) or {}
        return (
            props.get(SCHEMATIC_PROPERTY) == self.schematic_id
            and props.get(VERSION_PROPERTY) == self.version
            and props.get(ARCH_PROPERTY) == self.arch
        )


class ProgressReader:
    """A file wrapper that reports bytes read, so an upload shows a progress bar."""

    def __init__(self, handle: IO[bytes], total: int, task: str, progress: Progress) -> None:
        self._handle = handle
        self._total = total
        self._task = task
        self._progress = progress
        self._done = 0

    def __len__(self) -> int:
        return self._total - self._handle.tell()

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        if chunk:  # the last read finds nothing more: the end was reported already
            self._done += len(chunk)
            self._progress(self._task, self._done, self._total)
        return chunk

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)


def find_image(client: OpenStackClient, key: ImageKey) -> Any:
    """The oldest active Glance image for ``key``, a non-active one, or None. Read-only."""
    images = client.list("list images", client.image.images, name=key.name)
    ours = sorted((i for i in images if key.matches(i)), key=lambda i: str(i.created_at))
    active = [i for i in ours if i.status == "active"]
    if active:
        return active[0]
    return ours[0] if ours else None


def resolve_named_image(client: OpenStackClient, name_or_id: str) -> str:
    """The id of an existing image (provider_data ``image``).

    Raises ``InvalidRequest`` if it does not exist, ``Transient`` while it is not active.
    """
    image = client.find_one("find image", client.image.find_image, name_or_id)
    if image is None:
        raise InvalidRequest(f"no Glance image named {name_or_id!r}", field="provider_data.image")
    if image.status != "active":
        raise Transient(f"Glance image {name_or_id!r} is {image.status}, not active")
    return str(image.id)


def key_for(request: MachineRequest, runtime: Runtime) -> ImageKey:
    """The image key of ``request`` (registers the schematic with the factory).

    Raises ``InvalidRequest`` for a platform/arch the factory lacks, ``Transient``
    when the factory is unreachable.
    """
    schematic_id = images_for(runtime).register(Schematic.from_request(request))
    return ImageKey(version=request.talos_version, arch=str(request.arch),
                    schematic_id=schematic_id)


def ensure_image(
    client: OpenStackClient, config: OpenStackConfig, runtime: Runtime, request: MachineRequest
) -> str:
    """The Glance image id for ``request``'s Talos image, uploading it if needed.

    Idempotent: an active image with the same key is reused. Raises
    ``InvalidRequest`` (secure boot, unknown arch), ``Transient`` (another upload
    in progress, network trouble), ``QuotaExceeded`` (Glance storage quota).
    """
    if request.secure_boot:
        raise InvalidRequest("the Image Factory has no secure boot image for openstack",
                             field="secure_boot")
    key = key_for(request, runtime)
    with _lock_for(key.name):
        found = find_image(client, key)
        if found is not None and found.status == "active":
            return str(found.id)
        if found is not None and found.status in ("saving", "importing", "uploading"):
            raise Transient(f"image {key.name} is being uploaded ({found.status})",
                            retry_after=15)
        if found is not None:
            # A queued/killed image left by an interrupted upload: start over.
            client.delete("delete stale image", lambda: client.image.delete_image(found.id))
        raw = _raw_image(runtime, key)
        return _upload(client, config, runtime, key, raw)


def _raw_image(runtime: Runtime, key: ImageKey) -> Path:
    """The decompressed image file in the cache (decompressed once, atomically)."""
    url = images_for(runtime).image_url(key.schematic_id, key.version, Platform.OPENSTACK, key.arch)
    compressed = images_for(runtime).download(url, progress=runtime.progress)
    target = runtime.cache_dir / "openstack" / f"{key.name}.raw"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".raw.{os.getpid()}.part")
    try:
        with lzma.open(compressed, "rb") as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
    except lzma.LZMAError:
        partial.unlink(missing_ok=True)
        compressed.unlink(missing_ok=True)  # let the next attempt download it again
        raise Transient(f"{compressed.name}: not a valid xz file") from None
    partial.replace(target)
    return target


def _upload(
    client: OpenStackClient, config: OpenStackConfig, runtime: Runtime, key: ImageKey,
    raw: Path,
) -> str:
    total = raw.stat().st_size
    with raw.open("rb") as handle:
        reader = ProgressReader(handle, total, f"upload {key.name}", runtime.progress)
        image = client.write(
            f"upload image {key.name}",
            lambda: client.image.create_image(
                key.name,
                data=reader,
                disk_format="raw",
                container_format="bare",
                visibility=config.image_visibility,
                allow_duplicates=True,
                wait=False,
                size=total,
                **key.properties(config),
            ),
        )
    return str(image.id)

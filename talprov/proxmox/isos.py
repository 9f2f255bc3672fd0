"""Steps that put ISO files on a node's ISO storage: the Talos boot ISO and seed ISOs.

The boot ISO is looked for first (one content listing per node and storage), then
downloaded by the node once, however many requests boot it: requests of one pass
share one download (``run_batch``), and requests of later passes find the running
download in ``_downloads`` or the finished file in the listing.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from talprov.providers.errors import InstanceUnavailable, InvalidRequest, ProviderError
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import Retry, StepResult
from talprov.proxmox import images
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.errors import TaskFailed
from talprov.proxmox.state import ProxmoxState
from talprov.talos.factory import images_for
from talprov.talos.join import refuse_fixed_image

Ctx = StepContext[ProxmoxMachineData, ProxmoxState]


class IsoListings:
    """The ISOs on each (node, storage), read at most once: what one batch sees.

    Safe to share between the threads of a batch.
    """

    def __init__(self, read: Callable[[str, str], set[str]]) -> None:
        self._read = read
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, node: str, storage: str) -> set[str]:
        with self._lock:
            if (node, storage) not in self._seen:
                self._seen[(node, storage)] = self._read(node, storage)
            return self._seen[(node, storage)]

    def forget(self, node: str, storage: str) -> None:
        """Read this storage again next time (after something was added to it)."""
        with self._lock:
            self._seen.pop((node, storage), None)


class IsoSteps:
    """The ``ensure-iso`` step and ISO uploads for one provider instance."""

    def __init__(
        self, client: PveClient, config: ProxmoxConfig, runtime: Runtime,
        resolve_url: images.IsoUrlResolver,
    ) -> None:
        self.client = client
        self.config = config
        self.runtime = runtime
        self.resolve_url = resolve_url
        # (node, storage, file) -> UPID of a download this process started.
        self._downloads: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()  # guards the two dicts, held for no I/O
        # One lock per ISO, held over its transfer: an upload from the cache (a
        # whole download, then an upload) must not make every other ISO wait.
        self._iso_locks: dict[tuple[str, str, str], threading.Lock] = {}

    # -- listing ------------------------------------------------------------

    def iso_names(self, node: str, storage: str) -> set[str]:
        """Volume ids of the ISOs on ``storage`` as seen from ``node``."""
        items: Sequence[Mapping[str, Any]] = self.client.get(
            f"list ISOs on {storage} of node {node}",
            f"nodes/{node}/storage/{storage}/content", content="iso",
        )
        return {str(item["volid"]) for item in items}

    # -- the boot ISO -------------------------------------------------------

    def ensure_iso_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """Make the boot ISO of every request present on its node; one download each."""
        outcomes: list[StepResult | BaseException] = [None] * len(ctxs)
        listings = IsoListings(self.iso_names)
        for index, ctx in enumerate(ctxs):
            try:
                outcomes[index] = self._ensure_iso(ctx, listings)
            except ProviderError as exc:
                outcomes[index] = exc
        return outcomes

    def _ensure_iso(self, ctx: Ctx, listings: IsoListings) -> StepResult:
        state = ctx.state
        if state.iso_volume is not None and state.iso_task is None:
            return None
        assert state.node is not None
        assert state.iso_storage is not None
        node, storage = state.node, state.iso_storage
        refuse_fixed_image(ctx.request, "provider_data.iso", ctx.data.iso)
        if ctx.data.iso is not None:
            iso_storage = ctx.data.iso.split(":", 1)[0]
            if ctx.data.iso not in listings(node, iso_storage):
                raise InvalidRequest(f"{ctx.data.iso} is not on node {node}", field="iso")
            state.iso_volume = ctx.data.iso
            return None
        url = self.resolve_url(ctx.request)
        name = images.iso_file_name(url)
        volume = f"{storage}:iso/{name}"
        key = (node, storage, name)
        if state.iso_task is not None:
            return self._follow_download(ctx, key, url, volume)
        if volume in listings(node, storage):
            state.iso_volume = volume
            return None
        with self._iso_lock(key):
            with self._lock:
                upid = self._downloads.get(key)
            if upid is None:
                upid = self._start_transfer(ctx, key, url)
                if upid is None:
                    listings.forget(node, storage)
                    state.iso_volume = volume
                    return None
                with self._lock:
                    self._downloads[key] = upid
        state.iso_task = upid
        return Retry(0, f"waiting for the node to download {name}")

    def _iso_lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._lock:
            return self._iso_locks.setdefault(key, threading.Lock())

    def _start_transfer(self, ctx: Ctx, key: tuple[str, str, str], url: str) -> str | None:
        """Start the node's download (UPID), or upload from the cache (None: done)."""
        node, storage, name = key
        if self._upload_only():
            self._upload_from_cache(node, storage, name, url)
            ctx.event(f"uploaded Talos ISO {name} to {storage} on {node}")
            return None
        upid = self.client.post(
            f"download Talos ISO to {storage} on {node}",
            f"nodes/{node}/storage/{storage}/download-url",
            url=url, filename=name, content="iso",
        )
        ctx.event(f"node {node} downloads Talos ISO {name} into {storage}")
        return str(upid)

    def _upload_only(self) -> bool:
        """Whether the boot ISO goes up from talprov's cache, never by the node's own
        download: ``iso_transfer: upload``, or ``auto`` with an Image Factory that
        has credentials (it serves images to its user only; the node has none).
        Raises ``InstanceUnavailable`` for ``download`` with such a factory: every
        node download would be refused until the operator changes the setting."""
        transfer = self.config.iso_transfer
        if transfer == "upload":
            return True
        factory = images_for(self.runtime)
        if not factory.authenticated:
            return False
        if transfer == "download":
            raise InstanceUnavailable(
                f"iso_transfer: download: the Image Factory {factory.base_url} serves images "
                "to its user only and the node has no credentials; set iso_transfer: "
                "upload or auto")
        return True

    def _follow_download(
        self, ctx: Ctx, key: tuple[str, str, str], url: str, volume: str
    ) -> StepResult:
        state = ctx.state
        node, storage, name = key
        assert state.iso_task
        try:
            done = self.client.task_done(node, state.iso_task, f"download {name}")
        except TaskFailed as exc:
            with self._lock:
                self._downloads.pop(key, None)
            state.iso_task = None
            if self.config.iso_transfer != "auto":
                raise
            ctx.event(f"download on {node} failed ({exc.exitstatus}); uploading from cache")
            with self._iso_lock(key):
                if volume not in self.iso_names(node, storage):
                    self._upload_from_cache(node, storage, name, url)
            state.iso_volume = volume
            return None
        if not done:
            return Retry(self.config.poll_interval, f"node {node} still downloading {name}")
        with self._lock:
            self._downloads.pop(key, None)
        state.iso_task = None
        state.iso_volume = volume
        return None

    def _upload_from_cache(self, node: str, storage: str, name: str, url: str) -> None:
        path = Path(images_for(self.runtime).download(url))
        raw = io.FileIO(path, "rb")
        # proxmoxer names the uploaded file after the file object's name.
        raw.name = name
        with raw:
            self._upload(node, storage, name, raw)

    # -- uploads ------------------------------------------------------------

    def _upload(self, node: str, storage: str, name: str, body: io.IOBase) -> None:
        what = f"upload {name} to {storage} on {node}"
        upid = self.client.call(
            what, lambda api: api.nodes(node).storage(storage).upload.post(
                content="iso", filename=body
            ),
        )
        self.client.wait_task(node, str(upid), what, clock=self.runtime.clock,
                              sleep=self.runtime.sleep)

    def ensure_file(self, node: str, storage: str, name: str, content: bytes,
                    listings: IsoListings | None = None) -> str:
        """Upload ``content`` as ISO ``name`` unless a file of that name is there
        (in ``listings``, a batch's shared view, or a fresh listing).

        Returns the volume id. Idempotent. Raises ``ProviderError`` subclasses.
        """
        volume = f"{storage}:iso/{name}"
        listed = listings(node, storage) if listings else self.iso_names(node, storage)
        if volume in listed:
            return volume
        body = io.BytesIO(content)
        body.name = name  # proxmoxer sends it as the file name
        self._upload(node, storage, name, body)
        return volume

"""A local download cache: one file per URL, resumable, verified, shared safely.

Layout under ``cache_dir`` for a URL whose sha256 is ``K`` and last path segment ``N``:

* ``K-N``         the complete file (appears only by atomic rename);
* ``K-N.sha256``  its sha256 in hex (written before the rename);
* ``K-N.part``    bytes received so far; a later call continues it with ``Range``;
* ``K-N.lock``    an ``flock`` held while downloading, so threads and processes
  that ask for the same URL at once fetch it once: the others wait, then find it.

The file name keeps the asset's own name so importers that look at extensions
(``.iso``, ``.ova``) are happy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from talprov.providers.errors import ProviderError, Transient
from talprov.talos.progress import Progress, no_progress

CHUNK = 1 << 20
_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class ChecksumMismatch(Transient):
    """The downloaded bytes do not have the expected sha256 (the partial file is discarded)."""


def public_url(url: str) -> str:
    """The URL without credentials or query (safe for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Held by one thread of one process at a time for this path."""
    with _thread_locks_guard:
        local = _thread_locks.setdefault(lock_path, threading.Lock())
    with local, lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _RangeRefused(Exception):
    """The server cannot continue the partial file (HTTP 416): start again."""


class DownloadCache:
    """Downloads URLs into ``cache_dir`` once; see the module docstring for the layout.

    ``check`` turns an unsuccessful response into a talprov error (the Image
    Factory client maps 401/403 to AuthError, 404 to NotFound, 5xx to Transient).
    """

    def __init__(
        self,
        cache_dir: Path,
        client: httpx.Client,
        check: Callable[[httpx.Response, str], None],
        attempts: int = 4,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self._client = client
        self._check = check
        self._attempts = attempts

    def path_for(self, url: str) -> Path:
        """Where the complete file for ``url`` lives (it may not exist yet)."""
        key = hashlib.sha256(url.encode()).hexdigest()
        name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "download"
        return self.cache_dir / f"{key}-{name}"

    def cached(self, url: str) -> Path | None:
        """The complete cached file for ``url``, or None. Never touches the network."""
        final = self.path_for(url)
        if not final.exists():
            return None
        sidecar = final.with_name(final.name + ".sha256")
        if not sidecar.exists():
            # A crash between rename and sidecar write: the file is whole, re-hash it.
            sidecar.write_text(_file_sha256(final) + "\n")
        return final

    def sha256_of(self, path: Path) -> str:
        """The recorded sha256 of a cached file."""
        return path.with_name(path.name + ".sha256").read_text().strip()

    def fetch(
        self, url: str, progress: Progress | None = None, expected_sha256: str | None = None
    ) -> Path:
        """The local path of ``url``'s content, downloading it if needed.

        Idempotent: a second call returns the cached file without any request.
        Resumes a partial download with an HTTP Range request, retrying dropped
        connections a few times. Raises ``ChecksumMismatch`` when
        ``expected_sha256`` is given and does not match (nothing is kept),
        ``Transient`` when the connection keeps failing, and whatever ``check``
        raises for HTTP errors (``AuthError``, ``NotFound``, ``Transient``).
        """
        progress = progress or no_progress
        expected = expected_sha256.lower() if expected_sha256 else None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        final = self.path_for(url)
        with _exclusive(final.with_name(final.name + ".lock")):
            have = self.cached(url)
            if have is not None:
                if expected is None or self.sha256_of(have) == expected:
                    return have
                # The cache holds other bytes than the caller expects: fetch again.
                have.unlink()
            return self._download(url, final, progress, expected)

    def _download(self, url: str, final: Path, progress: Progress, expected: str | None) -> Path:
        part = final.with_name(final.name + ".part")
        task = f"download {final.name.split('-', 1)[1]}"
        last_error: ProviderError | None = None
        for _ in range(self._attempts):
            try:
                digest = self._receive(url, part, progress, task)
            except (httpx.TransportError, httpx.StreamError) as exc:
                last_error = Transient(
                    f"download of {public_url(url)} interrupted ({type(exc).__name__})"
                )
                continue
            except _RangeRefused:
                part.unlink(missing_ok=True)
                last_error = Transient(f"download of {public_url(url)} could not be resumed")
                continue
            if expected is not None and digest != expected:
                part.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"{public_url(url)}: sha256 is {digest}, expected {expected}"
                )
            sidecar = final.with_name(final.name + ".sha256")
            sidecar.write_text(digest + "\n")
            os.replace(part, final)
            return final
        assert last_error is not None
        raise last_error

    def _receive(self, url: str, part: Path, progress: Progress, task: str) -> str:
        """Append the rest of ``url`` to ``part``; returns the whole file's sha256."""
        offset = part.stat().st_size if part.exists() else 0
        # Identity encoding keeps Range offsets equal to file offsets.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self._client.stream("GET", url, headers=headers) as response:
            if offset and response.status_code == 416:
                raise _RangeRefused
            self._check(response, public_url(url))
            if offset and response.status_code != 206:
                offset = 0  # the server ignored Range: start over with this full body
            if offset and _range_start(response) != offset:
                raise _RangeRefused  # bytes from elsewhere in the file would corrupt it
            digest = hashlib.sha256()
            if offset:
                with part.open("rb") as done:
                    for block in iter(lambda: done.read(CHUNK), b""):
                        digest.update(block)
            total = _total_size(response, offset)
            received = offset
            progress(task, received, total)
            with part.open("ab" if offset else "wb") as out:
                for block in response.iter_raw():  # as received, so a drop keeps what arrived
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    progress(task, received, total)
                out.flush()
                os.fsync(out.fileno())
            return digest.hexdigest()


def _range_start(response: httpx.Response) -> int | None:
    """The first byte position of a 206 response's Content-Range."""
    value = response.headers.get("content-range", "")
    start = value.removeprefix("bytes ").split("-", 1)[0]
    return int(start) if start.isdigit() else None


def _total_size(response: httpx.Response, offset: int) -> int | None:
    content_range = response.headers.get("content-range", "")
    if response.status_code == 206 and "/" in content_range:
        size = content_range.rsplit("/", 1)[1]
        return int(size) if size.isdigit() else None
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None

"""A local stand-in for the Talos Image Factory, for tests (never touches the internet).

``FakeImageFactory`` is a threaded stdlib HTTP server on 127.0.0.1 that answers:

* ``POST /schematics`` with ``{"id": ...}`` — the id computed by its own small
  re-implementation of the factory's canonical form (it does not import talprov,
  so agreeing with talprov is a real check); unknown fields give HTTP 400;
* ``GET /image/<id>/<version>/<asset>`` with small generated artifacts in the real
  formats: ``*.raw.xz`` (an MBR disk, xz), ``*.ova`` (tar: OVF descriptor, manifest,
  streamOptimized VMDK), ``*.iso`` (ISO 9660), ``kernel-<arch>``,
  ``initramfs-<arch>.xz`` (newc cpio, xz with CRC32 as the kernel wants);
* ``GET /pxe/<id>/<version>/metal-<arch>`` with an iPXE script;
* ``GET`` of ``cloud_images_path`` (``{version}`` substituted) with cloud-images.json;
* ``GET /versions`` with the list of Talos versions offered (FACTORY_VERSIONS).

With ``users`` set (name -> password) it behaves like the factory's authenticated
(Enterprise) edition: every request needs HTTP Basic credentials (401 without),
``POST /schematics`` sets the schematic's ``owner`` to the user, which changes the
id (it is the hash of the normalized schematic, ``owner:`` first), and answers
``{"id", "schematic"}`` with that normalized text; images of a schematic are
served to its owner only (403 for another user, and for everybody when it has
no owner, such as the default schematic's well-known id).

It honours ``Range``, counts requests per path in ``hits``, and injects faults:
``fail_next(path, status, times)`` and ``drop_next(path, after_bytes, times)``
(sends the headers and part of the body, then closes the connection).
Artifacts are deterministic and generated once per process.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import yaml

from talprov.testing.factory_artifacts import (
    artifact,
    default_cloud_images,
    iso9660,
    pxe_script,
    stream_optimized_vmdk,
)

__all__ = [
    "EMPTY_SCHEMATIC_ID",
    "FakeImageFactory",
    "iso9660",
    "schematic_id",
    "schematic_text",
    "stream_optimized_vmdk",
]

EMPTY_SCHEMATIC_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
#: What the stand-in answers to GET /versions (the real factory lists every Talos
#: release it builds, oldest first).
FACTORY_VERSIONS = ["v1.9.6", "v1.10.7", "v1.11.5", "v1.12.4", "v1.13.9"]


# --------------------------------------------------------------------------- schematic ids


def _quote(text: str) -> str:
    """A deliberately small subset of yaml.v3's string rules (enough for test schematics)."""
    if (
        # Join kernel args: URLs with queries, bracketed IPv6 hosts (plain in block style).
        re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./=:@?&%+,\[\]~-]*", text)
        and text.lower()
        not in (
            "true",
            "false",
            "null",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
        )
        and ": " not in text
    ):
        return text
    if "'" not in text and "\n" not in text:
        return "'" + text + "'"
    return json.dumps(text)


def schematic_id(body: dict[str, Any], owner: str = "") -> str:
    """The factory's id for a decoded schematic (sha256 of yaml.v3's Marshal output).

    Raises ``ValueError`` for fields the factory does not know.
    """
    return hashlib.sha256(schematic_text(body, owner).encode()).hexdigest()


def schematic_text(body: dict[str, Any], owner: str = "") -> str:
    """The factory's normalized schematic (``owner`` first when set, as its struct has it)."""
    unknown = set(body) - {"overlay", "customization"}
    custom = body.get("customization") or {}
    unknown |= set(custom) - {"extraKernelArgs", "meta", "systemExtensions", "secureboot"}
    if unknown:
        raise ValueError(f"field {sorted(unknown)[0]} not found in type schematic.Schematic")
    out: list[str] = [f"owner: {_quote(owner)}"] if owner else []
    overlay = body.get("overlay") or {}
    if overlay:
        out += [
            "overlay:",
            f"    image: {_quote(overlay.get('image', ''))}",
            f"    name: {_quote(overlay.get('name', ''))}",
        ]
    inner: list[str] = []
    if custom.get("extraKernelArgs"):
        inner += [
            "    extraKernelArgs:",
            *(f"        - {_quote(str(a))}" for a in custom["extraKernelArgs"]),
        ]
    if custom.get("meta"):
        inner.append("    meta:")
        for item in custom["meta"]:
            inner += [
                f"        - key: {int(item['key'])}",
                f"          value: {_quote(str(item['value']))}",
            ]
    extensions = (custom.get("systemExtensions") or {}).get("officialExtensions") or []
    if extensions:
        inner += ["    systemExtensions:", "        officialExtensions:"]
        inner += [f"            - {_quote(e)}" for e in extensions]
    if (custom.get("secureboot") or {}).get("includeWellKnownCertificates"):
        inner += ["    secureboot:", "        includeWellKnownCertificates: true"]
    out += ["customization:", *inner] if inner else ["customization: {}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- server


class FakeImageFactory:
    """The HTTP stand-in; see the module docstring. Use as a context manager or start()/stop()."""

    def __init__(self, cloud_images_path: str = "/releases/{version}/cloud-images.json", *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.cloud_images_path = cloud_images_path
        self.tls = tls  # a server context: serve HTTPS with its certificate
        self.cloud_images: dict[str, list[dict[str, str]]] = {}
        self.hits: Counter[str] = Counter()
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of ranged GETs
        self.schematics: dict[str, dict[str, Any]] = {EMPTY_SCHEMATIC_ID: {}}
        self.owners: dict[str, str] = {}  # schematic id -> owner (authenticated mode)
        self.users: dict[str, str] = {}  # name -> password; empty: no authentication
        self.id_override: str | None = None  # answer this id to POST /schematics (mismatch tests)
        self.body_delay = 0.0  # seconds to wait before sending a GET body (widens races)
        self._failures: dict[str, list[int]] = {}
        self._drops: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def cloud_images_url_template(self) -> str:
        return self.url + self.cloud_images_path

    def reset(self) -> None:
        """Forget hits, ranges, schematics posted, owners, overrides, delays and pending
        faults (between tests of one session). Idempotent; keeps ``users``."""
        with self._lock:
            self.cloud_images.clear()
            self.hits.clear()
            self.ranges.clear()
            self.schematics = {EMPTY_SCHEMATIC_ID: {}}
            self.owners.clear()
            self.id_override = None
            self.body_delay = 0.0
            self._failures.clear()
            self._drops.clear()

    def fail_next(self, path: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status``."""
        with self._lock:
            self._failures.setdefault(path, []).extend([status] * times)

    def drop_next(self, path: str, after_bytes: int, times: int = 1) -> None:
        """Hang up after ``after_bytes`` of the body on the next ``times`` GETs of ``path``."""
        with self._lock:
            self._drops.setdefault(path, []).extend([after_bytes] * times)

    def count(self, path: str) -> None:
        """Record one request for ``path`` (handler threads run concurrently)."""
        with self._lock:
            self.hits[path] += 1

    def take_fault(self, table: dict[str, list[int]], path: str) -> int | None:
        with self._lock:
            queue = table.get(path)
            return queue.pop(0) if queue else None

    def start(self) -> FakeImageFactory:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={
                "poll_interval": 0.02
            },  # shutdown() waits up to one poll name="fake-image-factory", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeImageFactory:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def register(self, body: dict[str, Any], owner: str = "") -> tuple[str, str]:
        """Store a schematic; (its id, its normalized text), as the factory answers them."""
        text = schematic_text(body, owner)
        computed = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            self.schematics[computed] = body
            if owner:
                self.owners[computed] = owner
        return self.id_override or computed, text

    def user_of(self, authorization: str | None) -> str | None:
        """The user whose Basic credentials these are, or None (wrong or missing)."""
        import base64

        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return name if self.users.get(name) == password and password else None

    def _listing(self, path: str) -> list[Any] | None:
        """The JSON list served at ``path`` (versions, a release's cloud images), or None."""
        if path == "/versions":  # the factory's list of the Talos versions it offers
            return list(FACTORY_VERSIONS)
        pattern = re.escape(self.cloud_images_path).replace(
            re.escape("{version}"), r"(v[0-9][^/]*)"
        )
        release = re.fullmatch(pattern, path)
        if release is None:
            return None
        wanted = release.group(1)
        return list(self.cloud_images.get(wanted) or default_cloud_images(wanted))

    def refused(self, path: str, user: str | None) -> bool:
        """Whether an authenticated factory answers 403 to ``user`` for ``path``: a
        known schematic that is not theirs, also one without an owner (the default
        schematic among them), as the factory's ownership rule has it."""
        match = re.fullmatch(r"/(?:image|pxe)/([0-9a-f]{64})/.*", path)
        return (bool(self.users) and match is not None and match.group(1) in self.schematics
                and self.owners.get(match.group(1)) != user)

    def content_for(self, path: str, user: str | None = None) -> tuple[bytes, str] | None:
        """The body and content type served for a GET of ``path``, or None (404)."""
        listed = self._listing(path)
        if listed is not None:
            return json.dumps(listed, indent=2).encode(), "application/json"
        match = re.fullmatch(r"/(image|pxe)/([0-9a-f]{64})/(v[0-9][^/]*)/([^/]+)", path)
        if not match or match.group(2) not in self.schematics:
            return None
        kind, schematic, version, asset = match.groups()
        if kind == "pxe":
            pxe = re.fullmatch(r"metal-(amd64|arm64)(-secureboot)?", asset)
            if not pxe:
                return None
            custom = self.schematics[schematic].get("customization") or {}
            extra = tuple(str(a) for a in custom.get("extraKernelArgs") or ())
            return pxe_script(self.url, schematic, version, pxe.group(1), extra), "text/plain"
        data = artifact(asset, f"{schematic}/{version}")
        return (data, "application/octet-stream") if data is not None else None


def _handler_for(fake: FakeImageFactory) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
            return

        def _path(self) -> str:
            return self.path.split("?", 1)[0]

        def _reply(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authenticated(self) -> tuple[bool, str | None]:
            """(may go on, user); answers 401 itself when credentials are needed."""
            if not fake.users:
                return True, None
            user = fake.user_of(self.headers.get("Authorization"))
            if user is None:
                self._reply(401, b"authentication required\n",
                            headers={"WWW-Authenticate": 'Basic realm="image-factory"'})
                return False, None
            return True, user

        def _injected_failure(self, path: str) -> bool:
            status = fake.take_fault(fake._failures, path)
            if status is None:
                return False
            self._reply(status, f"injected HTTP {status}\n".encode())
            return True

        def do_POST(self) -> None:
            path = self._path()
            fake.count(path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self._injected_failure(path):
                return
            if path != "/schematics":
                self._reply(404, b"not found\n")
                return
            allowed, user = self._authenticated()
            if not allowed:
                return
            try:
                parsed = yaml.safe_load(body) or {}
                if not isinstance(parsed, dict):
                    raise ValueError("schematic must be a mapping")
                new_id, normalized = fake.register(parsed, user or "")
            except (yaml.YAMLError, ValueError, TypeError, KeyError) as exc:
                self._reply(400, f"yaml: unmarshal errors:\n  {exc}\n".encode())
                return
            answer = {"id": new_id, "schematic": normalized}
            self._reply(201, json.dumps(answer).encode(), "application/json")

        def do_GET(self) -> None:
            path = self._path()
            fake.count(path)
            if self._injected_failure(path):
                return
            user = None
            if path.startswith(("/image/", "/pxe/")):  # release files are not the factory's
                allowed, user = self._authenticated()
                if not allowed:
                    return
            if fake.refused(path, user):
                self._reply(403, b"schematic owner does not match authenticated user\n")
                return
            found = fake.content_for(path, user)
            if found is None:
                self._reply(404, b"not found\n")
                return
            data, content_type = found
            start, status, extra = 0, 200, {"Accept-Ranges": "bytes"}
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if wanted:
                fake.ranges.append((path, wanted.group(0)))
                start = int(wanted.group(1))
                end = int(wanted.group(2)) if wanted.group(2) else len(data) - 1
                if start >= len(data):
                    self._reply(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                    return
                end = min(end, len(data) - 1)
                extra["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            if fake.body_delay:
                time.sleep(fake.body_delay)
            cut = fake.take_fault(fake._drops, path)
            if cut is None:
                self._reply(status, data, content_type, extra)
                return
            # Promise the whole body, send part of it, then hang up.
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True

        do_HEAD = do_GET

    return Handler

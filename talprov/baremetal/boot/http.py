"""The boot server's HTTP side: boot scripts, kernels/initramfs, single-use configs.

Endpoints (all GET):

* ``/boot.ipxe`` — a chain script that asks again with ``uuid`` and ``mac``;
* ``/boot.ipxe?uuid=…&mac=…`` — the per-machine decision (install, wipe, local
  disk, or nothing for an unknown machine, which is recorded as discovered);
* ``/assets/<schematic>/<version>/<file>`` — kernel or initramfs from the local
  mirror, or proxied from the Image Factory;
* ``/config/<uuid>/<token>`` — the machine config, once, for that UUID and token;
  every other caller gets 403 and an audit event;
* ``/wiped/<uuid>/<token>`` — a wipe image may say it is done, with the token
  its script carried as ``talprov.wipe_report=<url>`` (optional: without it the
  provider waits ``wipe_seconds``); ``/report/<uuid>?event=…`` is audit only.

Request paths are logged with tokens masked.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from talprov.baremetal.boot import ipxe, naming_socket
from talprov.baremetal.boot.binding import BootAlerts, DhcpLedger, SourceRateLimit
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import Inventory, MachineStatus, normalize_mac
from talprov.baremetal.records import uuid_or_none
from talprov.providers.errors import connection_failure
from talprov.talos.cache import public_url
from talprov.talos.factory import httpx_verify

log = logging.getLogger(__name__)

_SCHEMATIC = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
_ASSET = re.compile(r"^(kernel-(amd64|arm64)|initramfs-(amd64|arm64)\.xz)$")
_CHUNK = 1 << 20
#: Seconds a connection may stay silent (TLS handshake, request line, headers)
#: before it is closed: each connection holds a thread.
IDLE_SECONDS = 30.0
#: Requests one source address may make per minute, kernels and initramfs aside
#: (a PXE boot takes about six); the rest get 429. Most answers write an audit entry.
REQUESTS_PER_MINUTE = 120
#: Unknown machines recorded as discovered at most (until accepted or removed):
#: anyone on the provisioning network can make up UUIDs and MACs.
MAX_DISCOVERED = 1000
#: The secret part of a config or wipe-report path, wherever it shows up in a log line.
_TOKEN_IN_PATH = re.compile(r"(/(?:config|wiped)/[^/\s'\"]*/)[^\s'\"?]+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BootHttp:
    """Decides and serves what each machine boots. Thread-safe (state is in the inventory)."""

    def __init__(self, config: BareMetalConfig, inventory: Inventory, factory_url: str, *,
                 factory_auth: tuple[str, str] | None = None, factory_verify: bool | str = True,
                 ledger: DhcpLedger | None = None, alerts: BootAlerts | None = None) -> None:
        self.config = config
        self.inventory = inventory
        # The proxy (proxy_factory) fetches with the factory's credentials (the
        # BootServer took any written into the URL out of it).
        self.factory_url = factory_url.rstrip("/")
        self.factory_auth = factory_auth
        self.factory_verify = factory_verify
        self._factory_client: httpx.Client | None = None
        self._refusals_said: set[str] = set()  # one log line per kind of failure
        self._client_lock = threading.Lock()
        #: The DHCP responder's memory (None: no responder here, nothing to check).
        self.ledger = ledger
        self.alerts = alerts or BootAlerts()
        self._discovery_full = False
        self.limit = SourceRateLimit(lambda: REQUESTS_PER_MINUTE)

    def factory_client(self) -> httpx.Client:
        """The proxy's one HTTP client (its connections are reused across assets),
        made on first use with the factory's credentials and TLS setting. Thread-safe."""
        with self._client_lock:
            if self._factory_client is None:
                context = httpx_verify(self.factory_verify)
                # httpx drops the credentials on a redirect to another origin (a CDN).
                self._factory_client = httpx.Client(
                    auth=self.factory_auth, verify=context, follow_redirects=True,
                    timeout=60.0)
            return self._factory_client

    def factory_refused(self, kind: str) -> None:
        """Log, once per ``kind`` (an HTTP status or a failure in words), that the
        proxy got no asset from the factory: wrong credentials (401) must not look
        like a missing image. Names no credentials. Thread-safe."""
        with self._client_lock:
            if kind in self._refusals_said:
                return
            self._refusals_said.add(kind)
        log.warning("the boot server's proxy (proxy_factory) got no asset from the Image "
                    "Factory %s: %s; machines get 502 (said once)",
                    public_url(self.factory_url), kind)

    def close(self) -> None:
        """Close the proxy's client. Idempotent."""
        with self._client_lock:
            if self._factory_client is not None:
                self._factory_client.close()
                self._factory_client = None

    def boot_script(self, uuid: str | None, mac: str | None, remote: str) -> str:
        """The iPXE script for the machine with ``uuid``/``mac``. Records what it hands out."""
        uuid = uuid_or_none(uuid)
        try:
            mac = normalize_mac(mac) if mac else None
        except ValueError:
            mac = None
        if uuid is None and mac is None:
            return ipxe.chain_script(self.config.boot_url)
        machine = self.inventory.find(uuid, mac)
        if machine is None or machine.status == MachineStatus.DISCOVERED:
            found = self.inventory.discovered(uuid, mac, limit=MAX_DISCOVERED)
            if found is None:
                self._note_discovery_full(remote)
            else:
                self._discovery_full = False
                self.inventory.record_audit("discovered", machine=found.name, uuid=uuid,
                                            mac=mac, remote=remote)
            return ipxe.local_disk_script("machine not enrolled")
        boot_uuid = uuid or machine.uuid or ""
        if (machine.status == MachineStatus.ALLOCATED and machine.boot is not None
                and machine.has_config and machine.config_fetched_at is None):
            if self.ledger is not None and not self.ledger.vouches_for(machine.macs, remote):
                self.alerts.raise_alert("script-without-dhcp", machine.name, remote,
                                        "install script asked for without a matching DHCP "
                                        "exchange; no token handed out")
                self.inventory.record_audit("script-without-dhcp", machine=machine.name,
                                            uuid=uuid, mac=mac, remote=remote)
                return ipxe.local_disk_script("no matching DHCP exchange")
            token = secrets.token_urlsafe(24)
            self.inventory.note_script(machine.name, token, uuid, remote)
            self.inventory.record_audit("install-script", machine=machine.name, uuid=uuid,
                                        mac=mac, remote=remote)
            return ipxe.boot_script(machine.boot, self.config.boot_url, boot_uuid, token,
                                    self.config.config_base_url())
        if machine.status == MachineStatus.WIPING and machine.boot is not None:
            # The token lets the wipe image report "done" (and nobody else).
            token = secrets.token_urlsafe(24)
            self.inventory.note_script(machine.name, token, uuid, remote)
            self.inventory.record_audit("wipe-script", machine=machine.name, uuid=uuid, mac=mac,
                                        remote=remote)
            return ipxe.boot_script(machine.boot, self.config.boot_url, boot_uuid, token)
        self.inventory.note_script(machine.name, None, uuid)
        self.inventory.record_audit("local-disk", machine=machine.name, uuid=uuid, mac=mac,
                                    remote=remote, detail=str(machine.status))
        return ipxe.local_disk_script(f"{machine.status}: boot from disk")

    def _note_discovery_full(self, remote: str) -> None:
        # Once per filling up, not per request: a flood must not flood the log too.
        if not self._discovery_full:
            self._discovery_full = True
            log.warning("boot server: %d discovered machines wait for accept; unknown "
                        "machines are no longer recorded (last from %s); accept or remove "
                        "some (talprov baremetal list)", MAX_DISCOVERED, remote)

    def take_config(self, uuid: str, token: str, remote: str) -> str | None:
        """The config if ``token`` is ``uuid``'s live single-use token and ``remote``
        fetched the script that carried it; else None, audited (and alerted when
        a real token is used twice or from another address)."""
        canonical = uuid_or_none(uuid)
        taken = self.inventory.take_config(canonical, token, remote) if canonical else None
        if taken is None:
            self.inventory.record_audit("config-refused", uuid=uuid[:40], remote=remote,
                                        detail="unknown uuid, wrong or used token, or "
                                        "another address than the boot script's")
            log.warning("refused a config fetch for uuid %s from %s", uuid[:40], remote)
            suspicious = self.inventory.config_refusal(canonical, token, remote) \
                if canonical else None
            if suspicious is not None:
                kind, name = suspicious
                self.alerts.raise_alert(kind, name, remote, "config fetch refused")
                self.inventory.record_audit(kind, machine=name, uuid=uuid, remote=remote)
            return None
        name, config = taken
        self.inventory.record_audit("config-fetched", machine=name, uuid=uuid, remote=remote)
        return config

    def report(self, uuid: str, event: str, remote: str) -> bool:
        """Record a progress report of a machine (audit only); False for an unknown UUID."""
        canonical = uuid_or_none(uuid)
        machine = self.inventory.find(canonical, None) if canonical else None
        if machine is None:
            return False
        self.inventory.record_audit(f"report-{_printable(event)}", machine=machine.name,
                                    uuid=uuid, remote=remote)
        return True

    def wipe_done(self, uuid: str, token: str, remote: str) -> bool:
        """The wipe image's "done" (ends the wipe wait early); needs its script's token."""
        canonical = uuid_or_none(uuid)
        name = self.inventory.note_wipe_report(canonical, token) if canonical else None
        self.inventory.record_audit("wipe-reported" if name else "wipe-report-refused",
                                    machine=name, uuid=uuid[:40], remote=remote)
        return name is not None

    def asset_source(self, schematic: str, version: str, name: str) -> Path | str | None:
        """A mirror file path, a factory URL to proxy, or None when not allowed/found."""
        if not (_SCHEMATIC.match(schematic) and _VERSION.match(version) and _ASSET.match(name)):
            return None
        if self.config.mirror_dir:
            path = Path(self.config.mirror_dir) / schematic / version / name
            return path if path.is_file() else None
        if self.config.proxy_factory:
            return f"{self.factory_url}/image/{schematic}/{version}/{name}"
        return None


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "-_.")[:20]


def _masked(text: str) -> str:
    """``text`` fit for one log line: tokens of config and wipe paths masked, control
    characters (a forged line break) shown as ``?``."""
    return _UNPRINTABLE.sub("?", _TOKEN_IN_PATH.sub(r"\1***", text))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Read at connection time (not a class attribute), so tests may shorten it.
        self.connection.settimeout(IDLE_SECONDS)

    def log_message(self, format: str, *args: Any) -> None:
        # Error messages quote the raw request line, which may hold a token.
        log.info("%s %s", self.client_address[0], _masked(format % args))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A request line too malformed to parse leaves no path.
        parts = urlsplit(getattr(self, "path", ""))
        # Only boot.ipxe queries (uuid and mac) and the uuid of an asset fetch are
        # logged: nothing secret, and what ties a line to its machine.
        query = ""
        if parts.path == "/boot.ipxe" and parts.query:
            query = f"?{unquote(parts.query)}"
        elif parts.path.startswith("/assets/"):
            uuid = parse_qs(parts.query).get("uuid", [""])[0]
            canonical = uuid_or_none(uuid)
            query = f"?uuid={canonical}" if canonical else ""
        log.info("%s GET %s -> %s", self.client_address[0], _masked(parts.path + query), code)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        app = self.server.app
        remote = self.client_address[0]
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        try:
            if not self.server.serves_path(segments[0]):
                # With config_tls, configs go over HTTPS only and HTTPS serves only them.
                self._send(HTTPStatus.NOT_FOUND, b"not found here\n")
            elif segments[0] != "assets" and not app.limit.allow(remote):
                self._send(HTTPStatus.TOO_MANY_REQUESTS, b"slow down\n")
            elif segments == ["boot.ipxe"]:
                script = app.boot_script(query.get("uuid"), query.get("mac"), remote)
                self._send(HTTPStatus.OK, script.encode())
            elif len(segments) == 3 and segments[0] == "config":
                config = app.take_config(segments[1], segments[2], remote)
                if config is None:
                    self._send(HTTPStatus.FORBIDDEN, b"forbidden\n")
                else:
                    self._send(HTTPStatus.OK, config.encode(), "application/yaml")
            elif len(segments) == 3 and segments[0] == "wiped":
                ok = app.wipe_done(segments[1], segments[2], remote)
                self._send(HTTPStatus.OK if ok else HTTPStatus.FORBIDDEN,
                           b"ok\n" if ok else b"forbidden\n")
            elif len(segments) == 2 and segments[0] == "report":
                ok = app.report(segments[1], query.get("event", "done"), remote)
                self._send(HTTPStatus.OK if ok else HTTPStatus.NOT_FOUND, b"ok\n" if ok else b"")
            elif len(segments) == 4 and segments[0] == "assets":
                self._asset(segments[1], segments[2], segments[3], query.get("uuid"))
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n")
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:
            log.exception("boot server error on %s", _masked(parts.path))
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"error\n")

    def _asset(self, schematic: str, version: str, name: str, uuid: str | None) -> None:
        app = self.server.app
        source = app.asset_source(schematic, version, name)
        if source is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        canonical = uuid_or_none(uuid)
        if canonical:
            machine = app.inventory.find(canonical, None)
            if machine is not None:
                app.inventory.note_kernel(machine.name)
        if isinstance(source, Path):
            with source.open("rb") as handle:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(source.stat().st_size))
                self.end_headers()
                shutil.copyfileobj(handle, self.wfile, _CHUNK)
            return
        self._proxy(source)

    def _proxy(self, url: str) -> None:
        app = self.server.app
        answered = False
        try:
            with app.factory_client().stream("GET", url) as upstream:
                if upstream.status_code != HTTPStatus.OK:
                    app.factory_refused(f"HTTP {upstream.status_code}")
                    self._send(HTTPStatus.BAD_GATEWAY, b"factory error\n")
                    return
                answered = True
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/octet-stream")
                length = upstream.headers.get("Content-Length")
                if length:
                    self.send_header("Content-Length", length)
                self.end_headers()
                for chunk in upstream.iter_bytes(_CHUNK):
                    self.wfile.write(chunk)
        except httpx.TransportError as exc:
            app.factory_refused(connection_failure(exc))
            if answered:  # cut off mid-body: the machine sees a short read and retries
                self.close_connection = True
            else:
                self._send(HTTPStatus.BAD_GATEWAY, b"factory unreachable\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: BootHttp, *, https: bool) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.https = https

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread. With TLS the handshake happens here,
        # bounded by IDLE_SECONDS, not in the accept loop, where one client that
        # connects and says nothing would keep every machine from its config.
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(IDLE_SECONDS)
            try:
                request.do_handshake()
            except (OSError, ValueError) as exc:
                log.info("%s TLS handshake failed: %s", client_address[0],
                         _masked(type(exc).__name__))
                return
        super().finish_request(request, client_address)

    def serves_path(self, first_segment: str) -> bool:
        """Without ``config_tls`` everything; with it, HTTPS serves the configs and
        plain HTTP everything else."""
        if self.app.config.config_tls is None:
            return True
        return (first_segment == "config") == self.https


class HttpBootServer:
    """The HTTP endpoint running in a background thread."""

    def __init__(self, app: BootHttp, host: str, port: int, *,
                 tls: ssl.SSLContext | None = None) -> None:
        """Plain HTTP serves everything but configs when ``app.config.config_tls``
        is set; then the server with ``tls`` serves configs only."""
        try:
            self._server = _Server((host, port), app, https=tls is not None)
        except OSError as exc:
            raise naming_socket("HTTPS (config_tls)" if tls else "HTTP", host, port, exc) from None
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        # serve_forever polls for shutdown at this interval.
        self._poll = 0.1
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(self._poll,),
                                        name="boot-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

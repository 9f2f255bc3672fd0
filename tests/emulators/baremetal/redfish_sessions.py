"""A Redfish BMC with a session service: sushy-tools' emulator (resources, fake
systems driver, basic auth) behind a WSGI layer that adds the session login of
DMTF DSP0266, which the emulator lacks.

What the layer does, as the specification and BMC vendors' guides describe it:

- the service root ``GET /redfish/v1/`` needs no authentication and links the
  sessions collection (``SessionService`` and ``Links.Sessions``);
- ``POST /redfish/v1/SessionService/Sessions`` with ``UserName`` and ``Password``
  logs in: 201 Created, the token in ``X-Auth-Token``, the session's URI in
  ``Location`` (and as the body's ``@odata.id``); wrong credentials are a 401;
- every other request carries ``X-Auth-Token`` (or HTTP Basic); an unknown or
  expired token is a 401 ``NoValidSession``;
- ``DELETE`` of the session's URI logs out (204); the token is then refused.

The layer counts every request, which a test reads from ``GET /_emulator/requests``
(outside ``/redfish``); ``POST /_emulator/expire`` ends every session, as a BMC's
session timeout does. Run as ``python -m tests.emulators.baremetal.redfish_sessions
CONFIG.json``; :func:`redfish_bmc` starts it and yields a :class:`RedfishBmc`.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from talprov.processes import stop_process
from tests.emulators.baremetal.sushy import PASSWORD, SYSTEM_UUID, USER

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class SessionService:
    """The WSGI layer described above, around the emulator's app ``inner``."""

    def __init__(self, inner: Any, users: dict[str, str]) -> None:
        self.inner = inner
        self.users = users
        self.sessions: dict[str, tuple[str, str]] = {}  # token -> (session id, user)
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, env: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        method, path = env["REQUEST_METHOD"], env.get("PATH_INFO", "").rstrip("/")
        if path.startswith("/_emulator/"):
            return self._control(method, path, start)
        token = env.get("HTTP_X_AUTH_TOKEN")
        with self.lock:
            self.requests.append({"method": method, "path": path,
                                  "auth": "token" if token else "basic" if env.get(
                                      "HTTP_AUTHORIZATION") else "none"})
        if path in ("", "/redfish", ROOT):
            return self._root(env, start)
        if path == SESSIONS and method == "POST":
            return self._login(env, start)
        user = self._user(env, token)
        if user is None:
            return _json(start, "401 Unauthorized", _error("NoValidSession"))
        if path.startswith(SESSIONS + "/") and method == "DELETE":
            return self._logout(path, start)
        # The emulator checks HTTP Basic itself: hand it the session user's.
        basic = base64.b64encode(f"{user}:{self.users[user]}".encode()).decode()
        env = {**env, "HTTP_AUTHORIZATION": f"Basic {basic}"}
        env.pop("HTTP_X_AUTH_TOKEN", None)
        return self.inner(env, start)  # type: ignore[no-any-return]

    def _user(self, env: dict[str, Any], token: str | None) -> str | None:
        if token is not None:
            with self.lock:
                found = self.sessions.get(token)
            return None if found is None else found[1]
        header = env.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def _root(self, env: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            captured["status"] = status

        body = json.loads(b"".join(self.inner(env, keep)))
        body["SessionService"] = {"@odata.id": f"{ROOT}/SessionService"}
        body.setdefault("Links", {})["Sessions"] = {"@odata.id": SESSIONS}
        return _json(start, captured["status"], body)

    def _login(self, env: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        length = int(env.get("CONTENT_LENGTH") or 0)
        try:
            asked = json.loads(env["wsgi.input"].read(length) or b"{}")
        except ValueError:
            return _json(start, "400 Bad Request", _error("MalformedJSON"))
        user, password = asked.get("UserName"), asked.get("Password")
        if not isinstance(user, str) or self.users.get(user) != password:
            return _json(start, "401 Unauthorized", _error("AccessDenied"))
        token, number = secrets.token_hex(16), secrets.token_hex(4)
        uri = f"{SESSIONS}/{number}"
        with self.lock:
            self.sessions[token] = (number, user)
        body = {"@odata.id": uri, "@odata.type": "#Session.v1_0_0.Session", "Id": number,
                "Name": "User Session", "UserName": user, "Password": None}
        return _json(start, "201 Created", body,
                     [("X-Auth-Token", token), ("Location", uri)])

    def _logout(self, path: str, start: StartResponse) -> Iterable[bytes]:
        number = path.rsplit("/", 1)[1]
        with self.lock:
            ended = [t for t, (n, _) in self.sessions.items() if n == number]
            for token in ended:
                del self.sessions[token]
        if not ended:
            return _json(start, "404 Not Found", _error("ResourceMissingAtURI"))
        start("204 No Content", [])
        return [b""]

    def _control(self, method: str, path: str, start: StartResponse) -> Iterable[bytes]:
        with self.lock:
            if path == "/_emulator/expire" and method == "POST":
                self.sessions.clear()
            answer = {"requests": list(self.requests), "sessions": len(self.sessions)}
        return _json(start, "200 OK", answer)


def _error(message_id: str) -> dict[str, Any]:
    return {"error": {"code": f"Base.1.8.{message_id}", "message": message_id,
                      "@Message.ExtendedInfo": [{"MessageId": f"Base.1.8.{message_id}"}]}}


def _json(start: StartResponse, status: str, body: Any,
          headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                   *(headers or [])])
    return [data]


@dataclass
class RedfishBmc:
    """A running BMC: its URL, and what it was asked."""

    url: str

    def requests(self) -> list[dict[str, str]]:
        """Every request so far (method, path, auth: token/basic/none), in order."""
        found: list[dict[str, str]] = httpx.get(f"{self.url}/_emulator/requests").json()[
            "requests"]
        return found

    def open_sessions(self) -> int:
        return int(httpx.get(f"{self.url}/_emulator/requests").json()["sessions"])

    def expire_sessions(self) -> None:
        """End every session, as the BMC's session timeout does."""
        httpx.post(f"{self.url}/_emulator/expire").raise_for_status()


@contextmanager
def redfish_bmc(root: Path) -> Iterator[RedfishBmc]:
    """Run the BMC in a process of its own on 127.0.0.1; stop it afterwards."""
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = root / "redfish.json"
    config.write_text(json.dumps({"port": port, "htpasswd": str(root / "htpasswd"),
                                  "state_dir": str(root / "state")}))
    log = (root / "redfish.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", __name__, str(config)],
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/_emulator/requests", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Redfish BMC did not start: "
                                   + (root / "redfish.log").read_text())
            time.sleep(0.05)
        yield RedfishBmc(url)
    finally:
        stop_process(proc)


def main(config_path: str) -> None:
    from sushy_tools.emulator import main as emulator  # type: ignore[import-untyped]
    from werkzeug.serving import make_server

    config = json.loads(Path(config_path).read_text())
    emulator.app.configure(extra_config={
        "SUSHY_EMULATOR_AUTH_FILE": config["htpasswd"],
        "SUSHY_EMULATOR_FAKE_DRIVER": True,
        "SUSHY_EMULATOR_STATE_DIR": config["state_dir"],
        "SUSHY_EMULATOR_FAKE_SYSTEMS": [{
            "uuid": SYSTEM_UUID, "name": "fake1", "power_state": "Off",
            "nics": [{"mac": "52:54:00:00:00:01", "ip": "10.0.0.1"}]}],
    })
    app = SessionService(emulator.app, {USER: PASSWORD})
    make_server("127.0.0.1", config["port"], app, threaded=True).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])

"""A proxmoxer client with talprov's TLS rules and one re-login on 401.

proxmoxer builds the URLs and decodes PVE's answers; authentication is done here
because proxmoxer logs in with a bare ``requests.post`` outside its session, which
would skip fingerprint pinning and send the password to an unchecked server.

TLS: verification is on by default (certifi's CA bundle), ``ca_file`` trusts one
CA or self-signed certificate, ``fingerprint`` pins the certificate's SHA-256, and
``insecure`` turns checking off. The session ignores the environment
(``trust_env = False``) so that ``REQUESTS_CA_BUNDLE`` or proxy variables cannot
silently change what is trusted or where requests go.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from talprov.providers.errors import (
    InstanceAccessRefused,
    ProviderError,
    Transient,
    ca_file_unusable,
    naming_endpoint,
    retry_after_seconds,
)
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.errors import (
    TRANSIENT_RETRY_AFTER,
    ForeignAnswer,
    failed_task,
    is_unauthorized,
    translate,
)

T = TypeVar("T")

Api = Any
#: Seconds before the first look at a task that was just started; each later look
#: waits twice as long, up to ``poll_interval``.
FIRST_POLL = 0.1
"""proxmoxer's ProxmoxResource (untyped): ``api.nodes(node).qemu.get()``."""


#: Connections kept per host when nobody said how many steps run at once.
DEFAULT_POOL = 10

#: The Retry-After header of the last answer this thread got from PVE (or from a
#: proxy in front of it): proxmoxer's ResourceException does not keep the answer.
_retry_after: ContextVar[str | None] = ContextVar("talprov_pve_retry_after", default=None)


def _note_answer(response: Any, *_args: Any, **_kwargs: Any) -> Any:
    """requests' response hook: keep the answer's Retry-After for :meth:`PveClient.call`."""
    _retry_after.set(response.headers.get("Retry-After"))
    return response


def _serializer() -> Any:
    """proxmoxer's JSON serializer, made to refuse what is not PVE's JSON.

    proxmoxer hands back ``{"errors": <the body>}`` for a 2xx answer that is not
    JSON (a proxy's or web server's page), which reads as PVE data (health said
    "Proxmox VE ?"), and a KeyError for JSON without PVE's ``data``. Both raise
    ``ForeignAnswer`` here; a failed answer's body is never taken as PVE's field
    errors unless it is PVE's JSON.
    """
    from proxmoxer.backends.https import JsonSerializer

    class PveJson(JsonSerializer):  # type: ignore[misc]
        def loads(self, response: Any) -> Any:
            try:
                return json.loads(response.content.decode("utf-8"))["data"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                raise ForeignAnswer(response.status_code,
                                    response.headers.get("content-type", "")) from None

        def loads_errors(self, response: Any) -> Any:
            try:
                found = json.loads(response.text)
            except (UnicodeDecodeError, ValueError):
                return None
            return found.get("errors") if isinstance(found, dict) else None

    return PveJson()


def _adapter(fingerprint: str | None, connections: int) -> Any:
    """A requests adapter keeping up to ``connections`` connections to the host (its
    default, 10, makes urllib3 discard the rest: "Connection pool is full"), pinned
    to the certificate with ``fingerprint`` when given."""
    from requests.adapters import HTTPAdapter

    if fingerprint is None:
        return HTTPAdapter(pool_maxsize=connections)
    return _pinned_adapter(fingerprint, connections)


def _pinned_adapter(fingerprint: str, connections: int) -> Any:
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        """Accepts exactly the certificate with this SHA-256 fingerprint."""

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["assert_fingerprint"] = fingerprint.replace(":", "").lower()
            super().init_poolmanager(*args, **kwargs)

    return PinnedAdapter(pool_maxsize=connections)


def _auth_classes() -> tuple[type, type]:
    from proxmoxer.backends.https import ProxmoxHTTPAuthBase
    from requests.cookies import cookiejar_from_dict

    class TokenAuth(ProxmoxHTTPAuthBase):  # type: ignore[misc]
        """PVE API token: one header on every request; nothing to renew."""

        renewable = False

        def __init__(self, token_id: str, secret: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._header = f"PVEAPIToken={token_id}={secret}"

        def __call__(self, req: Any) -> Any:
            req.headers["Authorization"] = self._header
            return req

        def __repr__(self) -> str:
            return "TokenAuth(****)"

    class TicketAuth(ProxmoxHTTPAuthBase):  # type: ignore[misc]
        """A ticket cookie plus CSRF header, bought with the password."""

        renewable = True

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.ticket: str | None = None
            self.csrf: str | None = None

        def get_cookies(self) -> Any:
            return cookiejar_from_dict({"PVEAuthCookie": self.ticket} if self.ticket else {})

        def __call__(self, req: Any) -> Any:
            if req.method != "GET" and self.csrf:
                req.headers["CSRFPreventionToken"] = self.csrf
            return req

        def __repr__(self) -> str:
            return "TicketAuth(****)"

    return TokenAuth, TicketAuth


class PveClient:
    """One authenticated connection to a PVE cluster; safe to share between threads."""

    def __init__(self, config: ProxmoxConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall-clock seconds, for a Retry-After given as an HTTP-date."""
        from proxmoxer.backends.https import JsonSerializer, ProxmoxHTTPAuthBase, ProxmoxHttpSession
        from proxmoxer.core import ProxmoxResource

        self.config = config
        self._clock = clock
        host, port = config.host_port
        netloc = f"[{host}]" if ":" in host else host
        self.base_url = f"https://{netloc}:{port}/api2/json"
        verify: bool | str = True
        if config.insecure or config.fingerprint:
            verify = False  # the pinned adapter checks the certificate instead
        elif config.ca_file:
            verify = config.ca_file
        #: The setting a certificate that does not verify is checked by (for its error).
        self._trust = "fingerprint" if config.fingerprint else "ca_file" if config.ca_file else ""
        common = {"timeout": config.timeout, "verify_ssl": verify, "service": "PVE"}
        session = ProxmoxHttpSession()
        session.trust_env = False
        session.headers["accept"] = JsonSerializer().get_accept_types()
        session.mount("https://", _adapter(config.fingerprint, DEFAULT_POOL))
        session.hooks["response"].append(_note_answer)
        token_auth, ticket_auth = _auth_classes()
        if config.token_id and config.token_secret:
            self._auth = token_auth(
                config.token_id, config.token_secret.get_secret_value(), **common
            )
        else:
            self._auth = ticket_auth(**common)
        self._login_auth = ProxmoxHTTPAuthBase(**common)
        session.auth = self._auth
        self._session = session
        self._serializer = _serializer()
        self._lock = threading.Lock()
        self.api: Api = ProxmoxResource(
            base_url=self.base_url, session=session, serializer=self._serializer
        )

    def __repr__(self) -> str:
        return f"PveClient({self.base_url})"

    def use_connections(self, connections: int) -> None:
        """Keep up to ``connections`` connections to the cluster (before any call;
        idempotent): one for every call that may run at once."""
        self._session.mount("https://", _adapter(self.config.fingerprint,
                                                 max(DEFAULT_POOL, connections)))

    # -- authentication -----------------------------------------------------

    def _login(self) -> None:
        """Buy a fresh ticket with the password. Raises InstanceAccessRefused (a refused
        password, a second factor asked for) or Transient."""
        assert self.config.username is not None
        assert self.config.password is not None
        _retry_after.set(None)
        try:
            # ProxmoxHttpSession.request has no ``json`` parameter, so not .post().
            response = self._session.request(
                "POST", self.base_url + "/access/ticket",
                data={"username": self.config.username,
                      "password": self.config.password.get_secret_value()},
                auth=self._login_auth,
            )
        except Exception as exc:
            raise self._translated(exc, "log in to PVE") from None
        login = naming_endpoint(f"log in to PVE as {self.config.username}", self.base_url)
        if response.status_code == 401:
            raise InstanceAccessRefused(f"{login}: authentication failure")
        if response.status_code != 200:
            asked = retry_after_seconds(response.headers.get("Retry-After"), now=self._clock)
            raise Transient(f"{login}: {response.status_code} {response.reason}",
                            retry_after=TRANSIENT_RETRY_AFTER if asked is None else asked)
        try:
            data = self._serializer.loads(response)
        except ForeignAnswer as exc:
            raise translate(exc, login) from None
        if data.get("NeedTFA"):
            raise InstanceAccessRefused(f"{login}: the user needs a second factor; use an "
                                        "API token instead")
        self._auth.ticket, self._auth.csrf = data["ticket"], data["CSRFPreventionToken"]
        # PVE sets no cookies, but an intermediary might; the ticket must be the
        # only cookie proxmoxer sends.
        self._session.cookies.clear()

    def _ensure_login(self) -> None:
        if self._auth.renewable and self._auth.ticket is None:
            with self._lock:
                if self._auth.ticket is None:
                    self._login()

    def _relogin(self, stale_ticket: str | None) -> None:
        with self._lock:
            # Another thread may have renewed it already.
            if self._auth.ticket == stale_ticket:
                self._login()

    # -- calls --------------------------------------------------------------

    def call(self, what: str, fn: Callable[[Api], T]) -> T:
        """Run ``fn(api)``; translate its errors (see ``errors.translate``).

        On a 401 with ticket authentication the ticket is renewed once and the
        call repeated; a second 401 (or any 401 with a token) is ``InstanceAccessRefused``.
        Raises ``ProviderError`` subclasses only. Idempotent exactly when ``fn`` is.
        """
        self._ensure_login()
        ticket = getattr(self._auth, "ticket", None)
        _retry_after.set(None)
        try:
            return fn(self.api)
        except Exception as exc:
            if not (is_unauthorized(exc) and self._auth.renewable):
                raise self._translated(exc, what) from None
        self._relogin(ticket)
        _retry_after.set(None)
        try:
            return fn(self.api)
        except Exception as exc:
            raise self._translated(exc, what) from None

    def _translated(self, exc: BaseException, what: str) -> ProviderError:
        """``exc`` translated; a transient one waits what the answer's Retry-After asked
        (bounded: ``retry_after_seconds``), else ``translate``'s default."""
        unusable = ca_file_unusable(self.config.ca_file, naming_endpoint(what, self.base_url))
        if unusable is not None:  # requests says only "invalid path" or an SSL error
            return unusable
        error = translate(exc, what, endpoint=self.base_url, trust=self._trust)
        asked = retry_after_seconds(_retry_after.get(), now=self._clock)
        if asked is not None and isinstance(error, Transient):
            error.retry_after = asked
        return error

    def get(self, what: str, path: str, **params: Any) -> Any:
        """GET ``path`` (e.g. "cluster/resources") with query ``params``."""
        return self.call(what, lambda api: api(path).get(**params))

    def post(self, what: str, path: str, **data: Any) -> Any:
        return self.call(what, lambda api: api(path).post(**data))

    def put(self, what: str, path: str, **data: Any) -> Any:
        return self.call(what, lambda api: api(path).put(**data))

    def delete(self, what: str, path: str, **params: Any) -> Any:
        return self.call(what, lambda api: api(path).delete(**params))

    # -- tasks --------------------------------------------------------------

    def task_status(self, node: str, upid: str) -> Mapping[str, Any]:
        """The task's status record (``status`` running/stopped, ``exitstatus``)."""
        result: Mapping[str, Any] = self.get(
            f"read task {upid}", f"nodes/{node}/tasks/{upid}/status"
        )
        return result

    def task_done(self, node: str, upid: str, what: str) -> bool:
        """True once the task ended well, False while it runs.

        Raises ``TaskFailed`` carrying PVE's exit status when it ended badly
        (``VmidTaken`` when a create lost its VMID: :func:`failed_task`).
        """
        status = self.task_status(node, upid)
        if status.get("status") == "running":
            return False
        exitstatus = str(status.get("exitstatus") or "")
        # PVE ends tasks that logged warnings with "WARNINGS: n"; they succeeded.
        if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
            return True
        raise failed_task(what, exitstatus or "unknown error", node=node, upid=upid)

    def wait_task(
        self, node: str, upid: str, what: str, *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Block until the task ends, at most ``task_timeout`` seconds.

        Raises ``TaskFailed`` when it fails and ``Transient`` when it is still running
        at the deadline (the caller's step is retried; it finds the result then).
        """
        deadline = clock() + self.config.task_timeout
        # Short tasks (an upload's copy) end within a second: look again soon,
        # then less and less often, up to poll_interval.
        delay = min(FIRST_POLL, self.config.poll_interval)
        while not self.task_done(node, upid, what):
            if clock() >= deadline:
                raise Transient(f"{what}: task {upid} still running after "
                                f"{self.config.task_timeout:.0f}s",
                                retry_after=self.config.poll_interval)
            sleep(delay)
            delay = min(self.config.poll_interval, delay * 2)

"""A small client of vCenter's Automation REST API (vAPI, ``/rest``): tagging, content library.

It logs in with the provider's user and password (``POST /rest/com/vmware/cis/session``
with basic auth) and sends the session id in the ``vmware-api-session-id`` header
on every later call (``vmware-use-header-authn`` asks vCenter not to set a cookie,
so no session is kept anywhere else). A call answered 401 logs in again once and
is repeated, as the SOAP side does for ``NotAuthenticated``.

TLS uses a context built by the same function as the SOAP connection's
(``client.ssl_context``), so ``ca_file``, ``thumbprint`` (pinned on every
handshake) and ``insecure`` mean the same on both.
``trust_env`` is off: proxy and CA-bundle environment variables change neither
what is trusted nor where requests go, exactly like the SOAP side.

The session id and the password never appear in logs, reprs or exceptions;
errors name the operation, the HTTP status and the vAPI error type only.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from talprov.providers.errors import ProviderError, Transient
from talprov.vmware.config import VSphereConfig
from talprov.vmware.errors import TRANSIENT_RETRY_AFTER, vapi_status_error, vapi_transport_error

SESSION_PATH = "/com/vmware/cis/session"
SESSION_HEADER = "vmware-api-session-id"
HEADER_AUTHN = "vmware-use-header-authn"
class VapiClient:
    """A vAPI REST session to one vCenter; safe to share between threads.

    ``transport`` replaces the network (tests feed recorded answers through it).
    ``clock`` is what a ``Retry-After`` HTTP-date is counted from: the runtime's,
    which the retries wait on too.
    """

    def __init__(self, config: VSphereConfig, context: ssl.SSLContext,
                 transport: httpx.BaseTransport | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        host, port = config.host_port
        self.base_url = f"https://{host}:{port}/rest"
        self._context = context
        self._transport = transport
        self._http: httpx.Client | None = None
        self._session_id: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VapiClient({self.base_url})"

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.base_url, verify=self._context, trust_env=False,
                timeout=self.config.timeout, transport=self._transport,
                headers={"Accept": "application/json"},
            )
        return self._http

    # -- session ------------------------------------------------------------

    def _login(self) -> str:
        what = f"log in to vCenter REST as {self.config.username}"
        response = self._send(what, "POST", SESSION_PATH, headers={HEADER_AUTHN: "true"},
                              auth=(self.config.username,
                                    self.config.password.get_secret_value()))
        if response.status_code >= 300:
            raise vapi_status_error(response, what, now=self._clock)
        value = _value(response, what)
        if not isinstance(value, str) or not value:
            raise Transient(f"{what}: no session id in the answer",
                            retry_after=TRANSIENT_RETRY_AFTER)
        return value

    def _session(self, stale: str | None = None) -> str:
        """The current session id; a new one when it is still ``stale`` (renew once)."""
        with self._lock:
            if self._session_id is None or self._session_id == stale:
                self._session_id = self._login()
            return self._session_id

    def close(self) -> None:
        """Log out (best effort) and close the connections. Idempotent."""
        with self._lock:
            session, self._session_id = self._session_id, None
            http, self._http = self._http, None
        if http is None:
            return
        if session is not None:
            # A dead session or connection needs no logout.
            with contextlib.suppress(httpx.HTTPError):
                http.delete(SESSION_PATH, headers={SESSION_HEADER: session})
        http.close()

    # -- calls --------------------------------------------------------------

    def _send(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client().request(method, path, **kwargs)
        except ProviderError:
            raise  # a pinned thumbprint that does not match (client.PinnedContext)
        except httpx.HTTPError as exc:
            raise vapi_transport_error(exc, what, trust=self.config.trust) from None

    def call(self, what: str, method: str, path: str, *, action: str | None = None,
             params: dict[str, str] | None = None, body: Any = None,
             timeout: float | None = None) -> Any:
        """``method`` ``/rest{path}`` (``~action`` when given); the answer's ``value``.

        A 401 renews the session once and repeats the call. Raises ``AuthError``
        (401 again, 403, TLS), ``NotFound`` (404), ``InvalidRequest`` (any other
        4xx but 408/425/429, unless the error type says busy), ``Transient``
        otherwise (:func:`talprov.vmware.errors.vapi_status_error`). Idempotent exactly when the
        vAPI operation is.
        """
        query = dict(params or {})
        if action is not None:
            query["~action"] = action
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            kwargs["json"] = body
        if timeout is not None:
            kwargs["timeout"] = timeout
        session = self._session()
        response = self._send(what, method, path, headers={SESSION_HEADER: session}, **kwargs)
        if response.status_code == 401:
            session = self._session(stale=session)
            response = self._send(what, method, path, headers={SESSION_HEADER: session},
                                  **kwargs)
        if response.status_code >= 300:
            raise vapi_status_error(response, what, now=self._clock)
        return _value(response, what)


def _value(response: httpx.Response, what: str) -> Any:
    """The ``value`` member of a ``/rest`` answer (None for an empty body)."""
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        raise Transient(f"{what}: vCenter REST answered something other than JSON",
                        retry_after=TRANSIENT_RETRY_AFTER) from None
    return body.get("value") if isinstance(body, dict) else None

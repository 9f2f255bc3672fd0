"""The one error hierarchy every driver translates its SDK's errors into.

The runner decides what to do from the class alone: permanent errors fail the
request with their message, the others are retried with backoff. Messages must
never contain secrets (machine configs, tokens, passwords): drivers build them
from field names and API error codes, not from request bodies.
"""

from __future__ import annotations

import email.utils
import http.client
import math
import os
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

#: HTTP 4xx statuses that mean "later" rather than "never": Request Timeout, Too
#: Early, Too Many Requests. Every other 4xx an API answers is a permanent error
#: (a driver's table may know better for a status it lists by name).
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
#: The longest wait a Retry-After header is believed for (the runner's longest step
#: backoff): a wrong or hostile header must not park a request for hours.
MAX_RETRY_AFTER = 300.0


class ProviderError(Exception):
    """Base of every error a provider raises on purpose."""

    #: Permanent errors fail the request at once; others are retried.
    permanent: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ProviderError):
    """The request cannot be satisfied as written; ``field`` names the culprit."""

    permanent = True

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class AuthError(ProviderError):
    """Credentials are wrong or lack a permission; retrying will not help."""

    permanent = True


class NotFound(ProviderError):
    """The thing asked for does not exist (deprovision treats this as success)."""


class QuotaExceeded(ProviderError):
    """An account limit was hit; back off the whole machine set."""


class CapacityError(ProviderError):
    """The platform has no room here now; try another zone or size, then back off."""


class Transient(ProviderError):
    """Throttling, 5xx, timeouts: try again, after ``retry_after`` when given."""


class EndpointUnreachable(Transient):
    """No connection to the endpoint could be made at all (refused, reset, a
    connect timeout, a host name not resolved): the instance's outage, which says
    nothing about the request. Retried like ``InstanceUnavailable``, never failing
    a request. A read timeout is no such error: the endpoint took the call, and it
    may be this call's alone (see ``talprov.reconcile.failures``)."""


class InstanceUnavailable(Transient):
    """The provider instance as a whole cannot work until its operator acts (no
    credentials in the process): nothing is wrong with the request. The runner
    retries with its backoff but never fails a request for these attempts."""


def ca_file_unusable(ca_file: str | None, what: str) -> InstanceUnavailable | None:
    """``InstanceUnavailable`` naming ``ca_file`` when no TLS client can load it any
    more (deleted or emptied after the config was read, which checked it): every
    call of the instance fails alike until its operator restores it. None when none
    is set or it loads. For a driver's error path, where an SSL or OS error may be
    the file's. Reads the file; never raises."""
    problem = ca_file_problem(ca_file) if ca_file else None
    if problem is None:
        return None
    return InstanceUnavailable(f"{what}: ca_file {ca_file}: {problem}")


class InstanceAccessRefused(InstanceUnavailable, AuthError):
    """The instance's endpoint refused its credentials, or its certificate did not
    verify against the instance's TLS settings: every request of the instance fails
    alike until its operator fixes them, so none is failed for it. An ``AuthError``
    (people read "credentials refused") that is retried like ``InstanceUnavailable``;
    a refusal that may be about one request (a missing privilege on one object)
    stays a plain, permanent ``AuthError``."""

    permanent = False


class StepTimeout(ProviderError):
    """A step waited longer than its deadline (a machine that never came up)."""

    permanent = True


#: What an :class:`InstanceUnavailable` means, in words.
UNUSABLE_UNTIL_FIXED = "not usable until its settings are fixed"
#: What each kind of provider error means, in words people read (never a class name).
ERROR_KINDS: tuple[tuple[type[ProviderError], str], ...] = (
    (AuthError, "credentials refused"),
    (QuotaExceeded, "over quota"),
    (CapacityError, "no capacity"),
    (NotFound, "not found"),
    (StepTimeout, "timed out"),
    (InstanceUnavailable, UNUSABLE_UNTIL_FIXED),
    (Transient, "not answering"),
)


def error_kind(exc: ProviderError) -> str | None:
    """A few words for what ``exc`` means, or None when its message says it all
    (an ``InvalidRequest`` names its field). Pure."""
    return next((kind for cls, kind in ERROR_KINDS if isinstance(exc, cls)), None)


def describe_error(exc: ProviderError) -> str:
    """``exc`` as one line for people: ``<kind>: <message>``, or the message alone
    when it already says its kind (naming what it is about first). Pure."""
    kind = error_kind(exc)
    return f"{kind}: {exc}" if kind and kind not in str(exc) else str(exc)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, without user, password, path, query or
    fragment, so that it can go into an error message (the port is the scheme's
    default when the URL gives none). A value without a scheme is cut at "?" and
    after "@". Pure; never raises."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.scheme or not parts.hostname:
        return url.split("?", 1)[0].rsplit("@", maxsplit=1)[-1]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = port if port is not None else _DEFAULT_PORTS.get(parts.scheme)
    return f"{parts.scheme}://{host}:{port}" if port is not None else f"{parts.scheme}://{host}"


def naming_endpoint(what: str, endpoint: str | None) -> str:
    """``what`` (the operation an error message starts with) followed by
    `` at <origin>`` (see :func:`endpoint_origin`) when ``endpoint`` is known. Pure."""
    return f"{what} at {endpoint_origin(endpoint)}" if endpoint else what


#: Words for why a connection failed, by what the error chain says (checked in order).
_CONNECTION_FAILURES = (
    ("refused", "connection refused"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("name or service not known", "host name not resolved"),
    ("nodename nor servname", "host name not resolved"),
    ("temporary failure in name resolution", "host name not resolved"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("reset by peer", "connection reset"),
    # A connection the peer closed: one kept alive and closed while idle, or a
    # server that dropped the request (http.client's and ssl's words).
    ("remote end closed connection", "connection closed without an answer"),
    ("broken pipe", "connection closed while sending"),
    ("eof occurred in violation of protocol", "connection closed by the peer"),
    ("certificate", "TLS verification failed"),
    ("ssl", "TLS handshake failed"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it was raised from, outermost first. SDKs wrap a few
    levels deep; at most 10, so that a cycle cannot hang. Pure."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def connection_failure(exc: BaseException) -> str:
    """Why a connection failed, in words (``connection refused``, ``timed out``,
    ``host name not resolved``...), read from ``exc`` and the errors it was raised
    from, whatever the SDK wraps them in; ``connection failed`` when none says.
    Never a class name. Pure; never raises."""
    text = " ".join(f"{type(seen).__name__} {seen}".lower() for seen in _chain(exc))
    return next((words for needle, words in _CONNECTION_FAILURES if needle in text),
                "connection failed")


#: What SDKs raise (by class name, so no SDK is imported here) when no connection
#: to the endpoint was made: refused, a connect timeout, a name not resolved. A
#: read timeout is not among them: the endpoint took the call.
_NEVER_CONNECTED = frozenset({
    "ConnectionRefusedError", "gaierror", "NewConnectionError", "NameResolutionError",
    "ConnectTimeoutError", "ConnectTimeout", "EndpointConnectionError", "ConnectError",
})


def never_connected(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it was raised from says that no connection to the
    endpoint was made (see :data:`_NEVER_CONNECTED`). Pure; never raises."""
    return any(type(seen).__name__ in _NEVER_CONNECTED for seen in _chain(exc))


def without_connection(message: str, exc: BaseException, *,
                       retry_after: float | None = None) -> Transient:
    """A driver's error for a call that got no answer: ``EndpointUnreachable`` when
    no connection was made (:func:`never_connected`), else ``Transient`` (a read
    timeout, a dropped connection: the endpoint may have taken the call). Pure."""
    kind = EndpointUnreachable if never_connected(exc) else Transient
    return kind(message, retry_after=retry_after)


def foreign_answer(service: str, status: int | None, content_type: str, setting: str, *,
                   detail: str = "") -> str:
    """Words for an answer that ``service`` (e.g. "EC2") would not give: the HTTP
    status and content type seen (or ``detail``), and the setting to check (the
    endpoint's URL setting, as the config names it). Never the body, which may
    echo a request. Pure."""
    seen = [f"HTTP {status} {http.client.responses.get(status, '')}".rstrip()] if status else []
    if content_type:
        seen.append(content_type.split(";", maxsplit=1)[0].strip().lower())
    if detail:
        seen.append(detail)
    said = f" ({', '.join(seen)})" if seen else ""
    return (f"the endpoint did not answer as {service}{said}: a wrong {setting}, "
            "or a proxy in between?")


def certificate_not_verified(service: str, trust: str, *, pin: str) -> str:
    """Words for a certificate of ``service`` (e.g. "vCenter") that did not verify,
    by the instance's TLS setting ``trust``: ``"ca_file"`` (the CA in that file did
    not sign it), ``pin`` (the name of the driver's pinning setting: the pinned
    value does not match) or ``""`` (the system's CAs: which settings would trust
    it). Never tells an operator to set what is already set. Pure."""
    if trust == "ca_file":
        return (f"{service}'s certificate is not signed by the CA in ca_file (or does "
                "not name the url's host)")
    if trust == pin:
        return f"{service}'s certificate does not match the pinned {pin}"
    return f"TLS verification of {service} failed (set ca_file or {pin})"


def ca_file_problem(path: str) -> str | None:
    """What makes ``path`` unusable as a ``ca_file`` (a PEM file of the CA
    certificates a TLS client trusts), in words; None when a TLS client can load it.

    Loaded as the clients load it (``load_verify_locations``): a missing file, a
    directory, an unreadable file and one without a PEM certificate (empty, DER,
    text) are each said. Reads the file; never raises; idempotent.
    """
    if os.path.isdir(path):
        return "is a directory; name a PEM file of CA certificates"
    if not os.path.exists(path):
        return "no such file"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        return "holds no PEM certificate (empty, DER or not a certificate)"
    except PermissionError:
        return "not readable (permission denied)"
    except (OSError, ValueError) as exc:
        return f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    return None


def retry_after_seconds(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """The wait a ``Retry-After`` header value asks for, in seconds within
    [0, MAX_RETRY_AFTER]: delay-seconds, or an HTTP-date counted from ``now()``
    (RFC 9110 section 10.2.3). None when absent or unreadable. Never raises."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT; anything else is no HTTP-date
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))

"""The one place where proxmoxer/requests errors become talprov errors.

PVE answers errors with an HTTP status, a one-line reason and, for parameter
errors, a per-field ``errors`` map. Messages built here use the status, PVE's
reason and field names only: never a request body (which may carry secrets).
"""

from __future__ import annotations

import re
from typing import Any

from talprov.providers.errors import (
    RETRYABLE_CLIENT_STATUSES,
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InvalidRequest,
    NotFound,
    ProviderError,
    Transient,
    certificate_not_verified,
    connection_failure,
    foreign_answer,
    naming_endpoint,
    without_connection,
)

#: How long to wait before retrying after a 5xx or a connection error.
TRANSIENT_RETRY_AFTER = 5.0

_ALREADY_EXISTS = re.compile(r"\balready exists\b", re.I)
_MISSING = re.compile(r"does not exist|no such (vm|file|volume)", re.I)
_NO_SPACE = re.compile(r"no space left|not enough space", re.I)


class VmidTaken(Transient):
    """The VMID picked from /cluster/nextid was taken by someone else first."""


class ForeignAnswer(Exception):
    """An answer that is not PVE's JSON: a proxy's or web server's page, a wrong url.

    Carries what an operator may be told (status, content type), never the body.
    """

    def __init__(self, status: int, content_type: str) -> None:
        super().__init__(f"HTTP {status} {content_type}")
        self.status = status
        self.content_type = content_type


class TaskFailed(ProviderError):
    """A PVE task ended with ``TASK ERROR``; ``exitstatus`` is PVE's text."""

    def __init__(self, what: str, exitstatus: str, *, node: str, upid: str) -> None:
        super().__init__(f"{what}: TASK ERROR: {exitstatus}", retry_after=TRANSIENT_RETRY_AFTER)
        self.exitstatus = exitstatus
        self.node = node
        self.upid = upid


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0][:300] if str(text or "").strip() else ""


def _field_errors(errors: Any) -> dict[str, str]:
    if isinstance(errors, dict):
        return {str(k): _first_line(v) for k, v in errors.items()}
    return {}


def translate(exc: BaseException, what: str, *, endpoint: str | None = None,
              trust: str = "") -> ProviderError:
    """The talprov error for ``exc`` raised while doing ``what`` (e.g. "create VM 101")
    against ``endpoint`` (the API's URL: named as scheme://host:port, nothing more),
    whose certificate is checked by ``trust`` ("fingerprint", "ca_file", or "" for
    the system's CAs: said when TLS verification fails).

    Refused credentials and a certificate that does not verify are the instance's
    (``InstanceAccessRefused``), not the request's. Never raises. Unknown
    exceptions become ``Transient`` so that a bug in a dependency is retried with
    backoff rather than crashing the runner; the step deadline still bounds it.
    """
    from proxmoxer.core import AuthenticationError, ResourceException
    from requests import exceptions as rq

    if isinstance(exc, ProviderError):
        return exc
    what = naming_endpoint(what, endpoint)
    if isinstance(exc, ResourceException):
        return _from_status(int(exc.status_code), _first_line(exc.content), exc.errors, what)
    if isinstance(exc, AuthenticationError):
        return InstanceAccessRefused(f"{what}: authentication failed")
    if isinstance(exc, rq.SSLError):
        return InstanceAccessRefused(
            f"{what}: {certificate_not_verified('PVE', trust, pin='fingerprint')}")
    if isinstance(exc, rq.Timeout | rq.ConnectionError):
        return without_connection(f"{what}: PVE API unreachable ({connection_failure(exc)})",
                                  exc, retry_after=TRANSIENT_RETRY_AFTER)
    detail = (foreign_answer("PVE", exc.status, exc.content_type, "url")
              if isinstance(exc, ForeignAnswer) else f"unexpected {type(exc).__name__}")
    return Transient(f"{what}: {detail}", retry_after=TRANSIENT_RETRY_AFTER)


def _from_status(  # noqa: PLR0911 - one branch per PVE status class
    status: int, reason: str, errors: Any, what: str
) -> ProviderError:
    text = f"{what}: {status} {reason}".rstrip()
    if status == 401:
        # A ticket that was just renewed, or an API token, refused: the instance's.
        return InstanceAccessRefused(text)
    if status == 403:
        return AuthError(f"{text} (the API token lacks a privilege)")
    if status == 400:
        fields = _field_errors(errors)
        if fields:
            name = sorted(fields)[0]
            return InvalidRequest(f"{fields[name]} ({what})", field=name)
        return InvalidRequest(text)
    if status == 404 or (status == 500 and _MISSING.search(reason)):
        return NotFound(text)
    if status == 500 and _ALREADY_EXISTS.search(reason):
        return VmidTaken(text, retry_after=0.0)
    if status == 500 and _NO_SPACE.search(reason):
        return CapacityError(text)
    if status in RETRYABLE_CLIENT_STATUSES or status >= 500:
        # 500 covers PVE's "VM is locked", "no quorum", lock timeouts; 595/596 are
        # pveproxy's "no route to host"/"connection error" to another node.
        return Transient(text, retry_after=TRANSIENT_RETRY_AFTER)
    if status >= 400:
        # A client error this table does not know will not go away by retrying.
        return InvalidRequest(text)
    return ProviderError(text)


def failed_task(what: str, exitstatus: str, *, node: str, upid: str) -> ProviderError:
    """The talprov error for a PVE task that ended with ``exitstatus`` (not ``OK``).

    A create task that lost its VMID to another creator (the id was free when
    the task started) is ``VmidTaken``; any other failure is ``TaskFailed``.
    """
    if _ALREADY_EXISTS.search(exitstatus):
        return VmidTaken(f"{what}: TASK ERROR: {exitstatus}", retry_after=0.0)
    return TaskFailed(what, exitstatus, node=node, upid=upid)


def is_unauthorized(exc: BaseException) -> bool:
    """Whether ``exc`` is PVE's 401 (an expired or revoked ticket, or a bad token)."""
    from proxmoxer.core import ResourceException

    return isinstance(exc, ResourceException) and int(exc.status_code) == 401

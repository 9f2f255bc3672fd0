"""The one place where pyvmomi faults, vAPI REST answers and connection errors become
talprov errors.

vSphere reports failures as ``vmodl`` faults, raised by calls and carried by
failed tasks (``task.info.error.fault``). Messages built here name the operation
and the fault's type (and the fields vSphere names), never a request body: the
VM spec carries the machine config.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    retry_after_seconds,
    without_connection,
)
from talprov.vmware import sdk

if TYPE_CHECKING:
    import httpx

#: How long to wait before retrying after a busy server or a connection error.
TRANSIENT_RETRY_AFTER = 5.0

# Fault type names (the class name without the module) grouped by talprov error.
_AUTH = {"NoPermission", "InvalidLogin", "NotAuthenticated", "NoClientCertificate",
         "RestrictedByAdministrator", "SecurityError"}
# Of those, the ones that refuse the instance's login itself, whatever the request
# (NoPermission may be about one folder or datastore a request names).
_LOGIN_REFUSED = {"InvalidLogin", "NotAuthenticated", "NoClientCertificate"}
_CAPACITY = {"InsufficientResourcesFault", "InsufficientCpuResourcesFault",
             "InsufficientMemoryResourcesFault", "InsufficientStorageSpace",
             "InsufficientHostCapacityFault", "InsufficientFailoverResourcesFault",
             "NoDiskSpace", "OutOfBounds", "NoCompatibleHost", "NoHost"}
_NOT_FOUND = {"ManagedObjectNotFound", "FileNotFound", "NotFound"}
_INVALID = {"DuplicateName", "InvalidName", "InvalidArgument", "InvalidRequest",
            "InvalidDeviceSpec", "InvalidDatastore", "InvalidDatastorePath",
            "NotSupported", "InvalidType", "OvfImport", "OvfConsumerValidationFault"}
# vAPI error types (``type`` of an error answer) that mean "try again later".
_VAPI_BUSY = {"resource_busy", "concurrent_change", "timed_out", "service_unavailable"}
_BUSY = {"InvalidPowerState", "TaskInProgress", "InvalidState", "ConcurrentAccess",
         "HostCommunication", "RequestCanceled", "Timedout", "SystemError"}


class TaskFailed(ProviderError):
    """A vCenter task ended in error; ``fault`` is the fault type name."""

    def __init__(self, message: str, fault: str) -> None:
        super().__init__(message, retry_after=TRANSIENT_RETRY_AFTER)
        self.fault = fault


def fault_name(exc: BaseException) -> str:
    """The vSphere fault type of ``exc`` (``vim.fault.DuplicateName`` → ``DuplicateName``)."""
    name = type(exc).__name__
    return name.rsplit(".", 1)[-1]


def _fault_detail(exc: Any) -> str:
    """Field names vSphere names in a fault (never values of a spec)."""
    for attribute in ("invalidProperty", "name"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str) and value:
            return f" ({attribute}={value})"
    return ""


def is_fault(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is a vSphere fault of one of ``names`` (or of a subclass)."""
    return any(klass.__name__.rsplit(".", 1)[-1] in names for klass in type(exc).__mro__)


def translate(exc: BaseException, what: str, *,  # noqa: PLR0911 - a table
              endpoint: str | None = None, trust: str = "") -> ProviderError:
    """The talprov error for ``exc`` raised while doing ``what`` (e.g. "clone VM w1")
    against ``endpoint`` (vCenter's URL: named as scheme://host:port, nothing more),
    whose certificate is checked by ``trust`` (:attr:`VSphereConfig.trust`: said
    when TLS verification fails).

    A refused login and a certificate that does not verify are the instance's
    (``InstanceAccessRefused``), not the request's. Never raises. Unknown exceptions
    become ``Transient`` so that a bug in a dependency is retried with backoff; the
    step deadline still bounds it.
    """
    vmodl = sdk.vmodl()

    if isinstance(exc, ProviderError):
        return exc
    what = naming_endpoint(what, endpoint)
    if isinstance(exc, vmodl.MethodFault):
        name = fault_name(exc)
        text = f"{what}: vSphere fault {name}{_fault_detail(exc)}"
        if is_fault(exc, *_LOGIN_REFUSED):
            return InstanceAccessRefused(text)
        if is_fault(exc, *_AUTH):
            return AuthError(text)
        if is_fault(exc, *_CAPACITY):
            return CapacityError(text)
        if is_fault(exc, *_NOT_FOUND):
            return NotFound(text)
        if is_fault(exc, *_BUSY):
            return Transient(text, retry_after=TRANSIENT_RETRY_AFTER)
        if is_fault(exc, *_INVALID):
            return InvalidRequest(text)
        return Transient(text, retry_after=TRANSIENT_RETRY_AFTER)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A certificate that does not verify will not start verifying on retry.
        return InstanceAccessRefused(f"{what}: {_not_verified(trust)}")
    if type(exc).__name__ == "ThumbprintMismatchException":
        return InstanceAccessRefused(f"{what}: {_not_verified('thumbprint')}")
    if isinstance(exc, socket.timeout | TimeoutError | ConnectionError | OSError
                  | http.client.HTTPException):
        return _no_answer(exc, what)
    if "is not a VIM server" in str(exc):
        # pyVmomi's words when {url}/vimServiceVersions.xml is not a 200 XML answer
        # (or offers no version it speaks); it raises a bare Exception for that.
        detail = "no readable vimServiceVersions.xml"
        return Transient(f"{what}: {foreign_answer('vCenter', None, '', 'url', detail=detail)}",
                         retry_after=TRANSIENT_RETRY_AFTER)
    return Transient(f"{what}: unexpected {type(exc).__name__}",
                     retry_after=TRANSIENT_RETRY_AFTER)


def _no_answer(exc: BaseException, what: str) -> Transient:
    """A network error (``what`` names the endpoint already), or pyVmomi's bare
    ``HTTPException("503 Service Unavailable")`` for an answer other than 200 or
    500: then something did answer (a proxy before vCenter, a restarting vCenter),
    which "unreachable" would hide."""
    if type(exc) is http.client.HTTPException:
        return Transient(f"{what}: vCenter answered HTTP {exc}",
                         retry_after=TRANSIENT_RETRY_AFTER)
    return without_connection(f"{what}: vCenter unreachable ({connection_failure(exc)})",
                              exc, retry_after=TRANSIENT_RETRY_AFTER)


def _not_verified(trust: str) -> str:
    return certificate_not_verified("vCenter", trust, pin="thumbprint")


def task_error(info: Any, what: str) -> ProviderError:
    """The talprov error for a failed task's ``info`` (``info.error`` is a LocalizedMethodFault)."""
    fault = getattr(info.error, "fault", None)
    if fault is None:
        return TaskFailed(f"{what}: task failed", fault="unknown")
    translated = translate(fault, what)
    if type(translated) is Transient:
        return TaskFailed(str(translated), fault=fault_name(fault))
    return translated


def _vapi_error_type(response: httpx.Response) -> str:
    """The vAPI error type of an error answer (``com.vmware.vapi.std.errors.x`` → x)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return str(kind).rsplit(".", 1)[-1]


def vapi_status_error(response: httpx.Response, what: str, *,
                      now: Callable[[], float] = time.time) -> ProviderError:
    """The talprov error for a non-2xx vAPI REST answer to ``what``; a Retry-After
    HTTP-date is counted from ``now()``. Never raises."""
    status = response.status_code
    kind = _vapi_error_type(response)
    what = naming_endpoint(what, _request_url(response))
    text = f"{what}: vCenter REST answered {status}" + (f" ({kind})" if kind else "")
    if status == 401:
        return InstanceAccessRefused(text)
    if status == 403:
        return AuthError(text)
    if status == 404 or kind == "not_found":
        return NotFound(text)
    # A 429/503's Retry-After (from vCenter's proxy or one in front of it), bounded.
    asked = retry_after_seconds(response.headers.get("Retry-After"), now=now)
    wait = TRANSIENT_RETRY_AFTER if asked is None else asked
    if kind in _VAPI_BUSY or status in RETRYABLE_CLIENT_STATUSES or status >= 500:
        return Transient(text, retry_after=wait)
    if status >= 400:
        # A client error that is not "busy" will not go away by retrying.
        return InvalidRequest(text)
    return Transient(text, retry_after=wait)


def _request_url(answer: httpx.Response | BaseException) -> str | None:
    """The URL an httpx answer or error was for (None when httpx does not know)."""
    try:
        return str(answer.request.url)  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):  # RuntimeError: no request attached
        return None


def _certificate_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def vapi_transport_error(exc: BaseException, what: str, *, trust: str = "") -> ProviderError:
    """The talprov error for an httpx failure to reach vCenter's REST API, whose
    certificate is checked by ``trust`` (as for :func:`translate`). Never raises."""
    what = naming_endpoint(what, _request_url(exc))
    if _certificate_failure(exc):
        return InstanceAccessRefused(f"{what}: {_not_verified(trust)}")
    return without_connection(f"{what}: vCenter REST unreachable ({connection_failure(exc)})",
                              exc, retry_after=TRANSIENT_RETRY_AFTER)

"""The one place where openstacksdk and keystoneauth errors become talprov errors.

* 401: keystoneauth has already thrown the token away and authenticated again
  once (its session does that on any 401); a second 401 means the credentials
  are wrong or revoked → ``InstanceAccessRefused`` (the instance's trouble: backed
  off, its requests wait for the fix instead of failing).
* 403 naming a quota (Nova answers ``forbidden`` "Quota exceeded ...") and
  Neutron's 409/413 ``OverQuota`` → ``QuotaExceeded``; any other 403 → ``AuthError``.
* 408, 409, 425, 429 and 5xx → ``Transient``, honouring ``Retry-After``.
* 400 and any other 4xx → ``InvalidRequest`` (naming the provider_data field
  when the answer is one of :data:`FIELD_OF_400`); 404 → ``NotFound``.
* Connection failures and timeouts → ``Transient``; a TLS failure →
  ``InstanceAccessRefused`` like a 401; a broken auth configuration → ``AuthError``;
  a service the catalog lacks in the region → ``InstanceUnavailable``.

Messages carry the operation and the API's own error text, which never holds
request bodies; talprov never puts user_data or credentials in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from talprov.providers.errors import (
    RETRYABLE_CLIENT_STATUSES,
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InstanceUnavailable,
    InvalidRequest,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Transient,
    ca_file_unusable,
    connection_failure,
    naming_endpoint,
    retry_after_seconds,
    without_connection,
)

NO_VALID_HOST = "no valid host"
MAX_DETAIL = 300
#: 400 answers about one provider_data field, by Neutron's error type or (Nova has
#: no types) the words of Nova's message, lowercased. Nova's from nova/compute/api.py
#: (an unknown or disabled zone), Neutron's from neutron_lib's exceptions
#: (InvalidIpForSubnet, InvalidIpForNetwork: a fixed IP outside the subnet/network).
FIELD_OF_400: tuple[tuple[str, str], ...] = (
    ("the requested availability zone is not available", "provider_data.availability_zone"),
    ("InvalidIpForSubnet", "provider_data.ports"),
    ("InvalidIpForNetwork", "provider_data.ports"),
)


def retry_after(response: Any) -> float | None:
    """Seconds from a response's ``Retry-After`` header, if any: read by the one
    rule every driver uses (both forms, bounded by ``MAX_RETRY_AFTER``)."""
    if response is None:
        return None
    return retry_after_seconds(response.headers.get("Retry-After"))


def _detail(exc: sdk.HttpException) -> str:
    return _cut(str(exc.details or exc.message or ""))


def _cut(text: str) -> str:
    """``text`` on one line, at most about :data:`MAX_DETAIL` characters, cut at a
    word (a word cut in half reads as another word: "Connection r")."""
    text = " ".join(text.split())
    if len(text) <= MAX_DETAIL:
        return text
    head = text[:MAX_DETAIL].rsplit(" ", 1)[0]
    return f"{head} …"


def _wrapped(exc: BaseException) -> ksa.ClientException | None:
    """The keystoneauth error a bare ``SDKException`` was raised for: the SDK's
    ``authorize`` re-raises them as ``SDKException(str(e))``, their kind lost."""
    if type(exc) is not sdk.SDKException:
        return None
    inner = exc.__cause__ or exc.__context__
    return inner if isinstance(inner, ksa.ClientException) else None


def _error_type(exc: sdk.HttpException) -> str:
    """Neutron's ``NeutronError.type`` (e.g. ``OverQuota``), when the body has one."""
    response = exc.response
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("NeutronError"), dict):
        return str(body["NeutronError"].get("type", ""))
    return ""


def is_no_valid_host(message: str | None) -> bool:
    """Whether a server fault says the scheduler found no room."""
    return message is not None and NO_VALID_HOST in message.lower()


def translate(exc: BaseException, what: str, *,  # noqa: PLR0911, PLR0912 - a table
              endpoint: str | None = None) -> ProviderError:
    """The talprov error for ``exc`` raised while doing ``what``. The message names
    the endpoint as scheme://host:port: the URL the SDK reports for the failed
    call, else ``endpoint``. Pure."""
    if isinstance(exc, ProviderError):
        return exc
    inner = _wrapped(exc)
    if inner is not None:
        return translate(inner, what, endpoint=endpoint)
    what = naming_endpoint(what, _endpoint_of(exc) or endpoint)
    if isinstance(exc, sdk.HttpException):
        return _from_http(exc, what)
    if isinstance(exc, ksa.http.Unauthorized):
        return InstanceAccessRefused(
            f"{what}: authentication failed (HTTP 401); check the credentials")
    if isinstance(exc, ksa.http.HttpError):
        status = int(getattr(exc, "http_status", 0) or 0)
        if status in RETRYABLE_CLIENT_STATUSES or status >= 500:
            return Transient(f"{what}: identity service answered HTTP {status}",
                             retry_after=retry_after(getattr(exc, "response", None)))
        return AuthError(f"{what}: identity service answered HTTP {status}")
    if isinstance(exc, ksa.SSLError):
        return InstanceAccessRefused(
            f"{what}: TLS verification failed; set ca_file to the cloud's CA")
    if isinstance(exc, ksa.ConnectionError | ksa.DiscoveryFailure):
        return without_connection(f"{what}: cloud unreachable ({connection_failure(exc)})",
                                  exc)
    if isinstance(exc, sdk.ServiceDisabledException | ksa.EndpointNotFound):
        # The catalog lacks the service where the settings look (OpenStackClient
        # names the setting when it meets the SDK's stand-in proxy first).
        return InstanceUnavailable(f"{what}: the service is not usable with the configured "
                                   f"region and interface ({_cut(str(exc))})")
    if isinstance(exc, ksa.AuthPluginException | sdk.ConfigException):
        return AuthError(f"{what}: cloud configuration problem ({type(exc).__name__}: {exc})")
    if isinstance(exc, sdk.DuplicateResource):
        return InvalidRequest(f"{what}: the name matches several resources; use the id")
    if isinstance(exc, sdk.ResourceTimeout):
        return Transient(f"{what}: timed out")
    if isinstance(exc, sdk.SDKException):
        return Transient(f"{what}: {type(exc).__name__}: {_cut(str(exc))}")
    raise exc


def _from_http(exc: sdk.HttpException, what: str) -> ProviderError:  # noqa: PLR0911 - a table
    status = exc.status_code or 0
    detail = _detail(exc)
    message = f"{what}: HTTP {status}: {detail}" if detail else f"{what}: HTTP {status}"
    quota = "quota" in detail.lower() or _error_type(exc) == "OverQuota"
    after = retry_after(exc.response)
    if status == 401:
        return InstanceAccessRefused(message)
    if status in (403, 409, 413) and quota:
        return QuotaExceeded(message, retry_after=after)
    if status == 403:
        return AuthError(message)
    if status == 404:
        return NotFound(message)
    if status == 400:
        if is_no_valid_host(detail):
            return CapacityError(message)
        return InvalidRequest(message, field=_field_of(detail, _error_type(exc)))
    if status == 409 or status in RETRYABLE_CLIENT_STATUSES or status >= 500:
        return Transient(message, retry_after=after)
    return InvalidRequest(message)


def _field_of(detail: str, error_type: str) -> str | None:
    """The provider_data field a 400 with this text and Neutron type is about, if known."""
    text = detail.lower()
    return next((field for words, field in FIELD_OF_400
                 if words == error_type or words in text), None)


def refused_whole(exc: ProviderError) -> bool:
    """Whether the cloud refused the call with a 4xx that says nothing was made and
    retrying the same call soon will not help (not 401, 408, 425 or 429): the
    answer to a bulk create that one bad item can cause."""
    cause = exc.__cause__
    status = getattr(cause, "status_code", None) if isinstance(cause, sdk.HttpException) else None
    return (isinstance(status, int) and 400 <= status < 500 and status != 401
            and status not in RETRYABLE_CLIENT_STATUSES)


def _endpoint_of(exc: BaseException) -> str | None:
    """The URL of the call that failed: the SDK's ``url`` attribute, else the first
    URL of the message (keystoneauth's connection errors carry it only there)."""
    url = getattr(exc, "url", None)
    if isinstance(url, str) and url:
        return url
    found = _URL.search(str(exc))
    return found[0] if found else None


_URL = re.compile(r"https?://[^\s/?#'\"]+")


@contextmanager
def openstack_errors(what: str, *, endpoint: str | None = None,
                     ca_file: str | None = None) -> Iterator[None]:
    """Re-raise SDK and keystoneauth errors, and the OS and SSL errors that pass
    them (requests' "Could not find a suitable TLS CA certificate bundle"), inside
    the block as talprov errors, naming ``endpoint`` when the error itself names
    none; ``InstanceUnavailable`` naming ``ca_file`` when that file cannot be
    loaded any more."""
    try:
        yield
    except (sdk.SDKException, ksa.ClientException, OSError) as exc:
        named = naming_endpoint(what, endpoint)
        error: ProviderError | None = ca_file_unusable(ca_file, named)
        if error is None and not isinstance(exc, sdk.SDKException | ksa.ClientException):
            # An OSError (ssl.SSLError too) from below the SDK, which left it as it was
            # (some SDK errors are OSErrors as well: requests' are).
            error = Transient(f"{named}: {connection_failure(exc)}")
        raise (error or translate(exc, what, endpoint=endpoint)) from exc


class ServerBuildFailed(ProviderError):
    """Nova put the server in ERROR for a reason other than capacity."""

    permanent = True


def scrub(exc: ProviderError, secret: str) -> bool:
    """Remove ``secret`` from ``exc``'s message; returns whether it was there."""
    if not secret or secret not in exc.message:
        return False
    exc.message = exc.message.replace(secret, "<user_data>")
    exc.args = (exc.message,)
    return True

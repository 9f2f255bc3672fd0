"""The one place where BMC errors (pyghmi for IPMI, sushy for Redfish) become talprov errors.

Messages name the operation and the BMC's answer (an HTTP status, pyghmi's
text), never a password: neither library puts it into its exceptions.
"""

from __future__ import annotations

from talprov.providers.errors import (
    RETRYABLE_CLIENT_STATUSES,
    AuthError,
    InvalidRequest,
    NotFound,
    ProviderError,
    Transient,
    connection_failure,
    foreign_answer,
    naming_endpoint,
)

#: Seconds before a BMC that failed transiently is asked again.
RETRY_AFTER = 10.0

# Phrases pyghmi uses when the BMC refuses the login (RAKP status codes and
# user lookups); anything else is treated as a transport problem.
_AUTH_PHRASES = ("password", "unauthorized name", "invalid role", "insufficient privilege",
                 "unauthorized role", "invalid name", "authentication")


def ipmi_error(exc: BaseException, what: str, *, endpoint: str | None = None) -> ProviderError:
    """The talprov error for a pyghmi failure while doing ``what`` on the BMC at
    ``endpoint`` (``ipmi://host:port``). Never raises.

    The message holds the BMC's error text (never the password, which pyghmi
    does not put into its exceptions).
    """
    if isinstance(exc, ProviderError):
        return exc
    what = naming_endpoint(what, endpoint)
    text = str(exc) if str(exc) not in ("", "None") else "no answer (timeout)"
    if any(phrase in text.lower() for phrase in _AUTH_PHRASES):
        return AuthError(f"{what}: the BMC refused the credentials ({text})")
    return Transient(f"{what}: {text}", retry_after=RETRY_AFTER)


def redfish_error(exc: BaseException, what: str, *,
                  endpoint: str | None = None) -> ProviderError:
    """The talprov error for a sushy/requests failure while doing ``what`` on the
    BMC at ``endpoint`` (its Redfish URL: named as scheme://host:port). Never raises.

    401/403 are refused credentials, 404 a missing resource, 408/425/429 and
    5xx transient; any other 4xx (a reset type or boot target the BMC does not
    take) will not work on retry either, so it is ``InvalidRequest``.
    """
    from sushy import exceptions as sushy_errors

    if isinstance(exc, ProviderError):
        return exc
    what = naming_endpoint(what, endpoint)
    if isinstance(exc, sushy_errors.AccessError):
        return AuthError(f"{what}: the BMC refused the credentials (HTTP {exc.status_code})")
    if isinstance(exc, sushy_errors.ResourceNotFoundError):
        return NotFound(f"{what}: not found on the BMC")
    if isinstance(exc, sushy_errors.HTTPError):
        status = int(exc.status_code or 0)
        text = f"{what}: HTTP {status}" + (f" {exc.code}" if exc.code else "")
        if 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES:
            return InvalidRequest(text)
        return Transient(text, retry_after=RETRY_AFTER)
    return Transient(f"{what}: {_without_answer(exc)}", retry_after=RETRY_AFTER)


def _without_answer(exc: BaseException) -> str:
    """Words for a Redfish call that got no readable answer (never a class name
    alone): the BMC did not answer, or not with Redfish's JSON."""
    import requests
    from sushy import exceptions as sushy_errors

    if isinstance(exc, sushy_errors.ConnectionError | requests.ConnectionError
                  | requests.Timeout):
        return f"BMC unreachable ({connection_failure(exc)})"
    if isinstance(exc, ValueError):  # requests' JSONDecodeError: a page, not Redfish
        return foreign_answer("Redfish", None, "", "BMC address", detail="not JSON")
    return f"unexpected {type(exc).__name__}"

"""The one place where botocore errors become talprov errors.

Every EC2/S3/STS call in this package runs inside :func:`aws_errors`, which
calls :func:`translate`. Messages carry the API error code and AWS's message,
never request bodies (user-data holds the machine config's CA keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import botocore.exceptions
from boto3.exceptions import Boto3Error
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigNotFound,
    ConfigParseError,
    ConnectionClosedError,
    ConnectionError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    InvalidConfigError,
    MetadataRetrievalError,
    NoAuthTokenError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    RefreshWithMFAUnsupportedError,
    ResponseStreamingError,
    SSOError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from botocore.parsers import ResponseParserError

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
    ca_file_problem,
    connection_failure,
    foreign_answer,
    naming_endpoint,
    without_connection,
)

THROTTLING_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException", "BandwidthLimitExceeded",
})
SERVER_CODES = frozenset({
    "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
    "RequestTimeout", "RequestTimeoutException", "IDPCommunicationError",
})
CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity",
    "InsufficientReservedInstanceCapacity", "InsufficientCapacityOnOutpost",
    "InsufficientFreeAddressesInSubnet", "Unsupported", "SpotMaxPriceTooLow",
})
QUOTA_CODES = {
    "InstanceLimitExceeded": "the account's On-Demand instance limit is reached",
    "VcpuLimitExceeded": "the account's vCPU quota for this instance family is reached; "
    "ask for a higher 'Running On-Demand instances' quota in Service Quotas",
    "MaxSpotInstanceCountExceeded": "the account's spot instance quota is reached",
    "VolumeLimitExceeded": "the account's EBS storage quota is reached",
    "ResourceLimitExceeded": "an account resource limit is reached",
    "AddressLimitExceeded": "the account's Elastic IP limit is reached",
}
# AWS refused the instance's credentials themselves (unknown or expired key, a bad
# signature, a clock too far off): every request of the instance fails alike until
# its operator fixes them, so none is failed for it (InstanceAccessRefused).
CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired", "InvalidAccessKeyId",
    "UnrecognizedClientException", "IncompleteSignature", "MissingAuthenticationToken",
})
# Refusals of what a call does (a missing permission, perhaps on one object a
# request names, an account or region not enabled): permanent AuthError.
AUTH_CODES = frozenset({
    "AuthFailure", "UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
    "OptInRequired", "Blocked",
})
# EC2 answers AuthFailure both for a key it cannot validate and for one object a
# request names that the account may not use ("Not authorized for images: [ami-…]",
# another account's Elastic IP): only the first, told by EC2's message, is the
# instance's trouble.
UNVALIDATED_CREDENTIALS = "not able to validate the provided access credentials"
# Error-code prefixes that name the provider_data field a user got wrong.
FIELD_BY_CODE_PREFIX = (
    ("InvalidSubnet", "provider_data.subnets"),
    ("InvalidGroup", "provider_data.security_groups"),
    ("InvalidSecurityGroup", "provider_data.security_groups"),
    ("InvalidAMI", "provider_data.ami"),
    ("InvalidKeyPair", "provider_data.key_name"),
    ("InvalidPlacementGroup", "provider_data.placement_group"),
    ("InvalidInstanceType", "provider_data.instance_type"),
    ("InvalidBlockDeviceMapping", "provider_data.root_volume"),
    ("InvalidUserData", "machine_config"),
    ("InvalidKMSKey", "provider_data.root_volume.kms_key_id"),
    ("KMS.", "provider_data.root_volume.kms_key_id"),
    ("NoSuchBucket", "image_bucket"),
)
# Parameter names in "Value (...) for parameter X is invalid" messages.
FIELD_BY_PARAMETER = {
    "groupid": "provider_data.security_groups",
    "groupids": "provider_data.security_groups",
    "subnetid": "provider_data.subnets",
    "instancetype": "provider_data.instance_type",
    "iaminstanceprofile.name": "provider_data.iam_instance_profile",
    "iaminstanceprofile.arn": "provider_data.iam_instance_profile",
    "keyname": "provider_data.key_name",
    "iops": "provider_data.root_volume.iops",
    "throughput": "provider_data.root_volume.throughput",
    "volumesize": "provider_data.root_volume.size",
    "size": "provider_data.root_volume.size",
    "kmskeyid": "provider_data.root_volume.kms_key_id",
    "userdata": "machine_config",
    "spotmaxprice": "provider_data.spot.max_price",
    "maxprice": "provider_data.spot.max_price",
    "placement.groupname": "provider_data.placement_group",
}
MESSAGE_LIMIT = 300
#: What a boto3 call raises when it got no AWS answer: none at all (BotoCoreError)
#: or one botocore cannot read (ResponseParserError, which is no BotoCoreError).
NO_AWS_ANSWER = (BotoCoreError, ResponseParserError)
_PARAMETER_RE = re.compile(r"parameter:?\s+'?([A-Za-z.]+)", re.IGNORECASE)


class NotAnAwsAnswer(BotoCoreError):
    """A 2xx answer that is an HTML page: a proxy's or a web server's, not AWS's.

    botocore would read a well-formed page as an answer with no data (no
    instances, no zones), which talprov must never act on. Raised by the
    before-parse hook of :func:`note_endpoints`; :func:`translate` words it.
    """

    fmt = "the answer is an HTML page"


class InstanceLost(ProviderError):
    """The instance ended up terminated before it ever ran (capacity, spot, limits).

    Permanent for this request: the step that created it has passed, so the
    request fails and whoever owns it (the scaler) replaces it.
    """

    permanent = True


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` ('' when the reply had none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _field_for(code: str, message: str) -> str | None:
    for prefix, field in FIELD_BY_CODE_PREFIX:
        if code.startswith(prefix):
            return field
    match = _PARAMETER_RE.search(message)
    if match:
        return FIELD_BY_PARAMETER.get(match.group(1).lower())
    return None


def translate(exc: Exception, operation: str, *, endpoint: str | None = None) -> Exception:
    """Map an exception raised by a boto3 call to the talprov error hierarchy.

    ``operation`` (e.g. "RunInstances") is put in the message with the endpoint
    (as scheme://host:port) the call went to: ``endpoint``, else the one botocore
    reports, else the one :func:`note_endpoints` saw the failing call start with.
    Exceptions that are not botocore's are returned unchanged. Never raises.
    """
    if isinstance(exc, ParamValidationError):
        # Refused before any request was sent: no endpoint was involved.
        return _invalid_parameters(exc, operation)
    if isinstance(exc, ClientError | BotoCoreError | ResponseParserError):
        kwargs = getattr(exc, "kwargs", None) or {}
        operation = naming_endpoint(
            operation, endpoint or kwargs.get("endpoint_url") or _calling.get())
    if isinstance(exc, ClientError):
        return _from_client_error(exc, operation)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        # Not AuthError (permanent): nothing was refused, and nothing is wrong with the
        # request. The process lacks credentials, which its operator sets and then
        # restarts it: the request must still be there, so it is retried meanwhile.
        found = "none found" if isinstance(exc, NoCredentialsError) else "incomplete ones"
        return InstanceUnavailable(
            f"{operation}: no AWS credentials found ({found} in the environment, the profile "
            "or instance metadata): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the "
            "instance's profile, then run talprov again (restart a running serve)")
    if isinstance(exc, NotAnAwsAnswer | ResponseParserError):
        return Transient(f"{operation}: {not_an_aws_answer()}")
    if isinstance(exc, BotoCoreError):
        return _bundle_unusable(exc, operation) or _without_answer(exc, operation)
    return exc


def _bundle_unusable(exc: BotoCoreError, operation: str) -> InstanceUnavailable | None:
    """``InstanceUnavailable`` naming the CA bundle setting and file of the failed
    call (:func:`note_endpoints`) when ``exc`` is a connection failure and no TLS
    client can load that file any more; else None. Reads the file, only on this
    error path."""
    noted = _ca_bundle.get()
    if noted is None or not isinstance(exc, EndpointConnectionError | ConnectionError
                                       | HTTPClientError):
        return None
    setting, path = noted
    problem = ca_file_problem(path)
    if problem is None:
        return None
    return InstanceUnavailable(f"{operation}: {setting} {path}: {problem} (it was there at "
                               "start; restore it, or change the setting and restart)")


#: Why a process cannot get its AWS credentials, by botocore's error (subclasses
#: first): what to check, for its operator. botocore's own text is never used: it
#: may quote a credential process's output.
_CREDENTIAL_PROBLEMS: tuple[tuple[type[BotoCoreError], str], ...] = (
    (MetadataRetrievalError, "cannot read credentials from the instance metadata service: "
                             "check the instance profile (its role) and that the metadata "
                             "service is reachable from here"),
    (UnauthorizedSSOTokenError, "the SSO session of the AWS profile has expired: run "
                                "`aws sso login` for the profile"),
    (SSOError, "the SSO token of the AWS profile cannot be read: run `aws sso login` for "
               "the profile"),
    (RefreshWithMFAUnsupportedError, "the AWS profile's role asks for an MFA code, which "
                                     "talprov cannot enter: use a role or credentials "
                                     "without MFA"),
    (ConfigNotFound, "the AWS config file is missing: check AWS_CONFIG_FILE"),
    (ConfigParseError, "the AWS config file cannot be parsed"),
    (InvalidConfigError, "the AWS config or credentials file is invalid (check the "
                         "profile's source_profile, role_arn and credential_source)"),
    (NoRegionError, "no region is known: check the instance's region setting"),
    (NoAuthTokenError, "no AWS bearer token found: check the profile's token settings"),
)


#: The errors of ``aws login`` sessions (botocore 1.40 and later; older ones lack it).
_LOGIN_ERRORS: tuple[type[Exception], ...] = tuple(
    kind for kind in (getattr(botocore.exceptions, "LoginError", None),) if kind is not None)


def _without_answer(exc: BotoCoreError, operation: str) -> ProviderError:
    """A botocore error raised without an AWS answer, in words naming what to check:
    the process's credentials (``InstanceUnavailable``: its operator must act, the
    requests wait), else the connection (``Transient``). Never a class name, never
    botocore's message, which may quote a credential source's output."""
    problem = _credential_problem(exc)
    if problem is not None:
        return InstanceUnavailable(f"{operation}: {problem}")
    return without_connection(f"{operation}: {_connection_problem(exc)}", exc)


def _credential_problem(exc: BotoCoreError) -> str | None:
    """What keeps this process from its AWS credentials, or None when ``exc`` is
    not about credentials."""
    kwargs = getattr(exc, "kwargs", None) or {}
    if isinstance(exc, CredentialRetrievalError | TokenRetrievalError):
        what = "credentials" if isinstance(exc, CredentialRetrievalError) else "a token"
        return (f"cannot get AWS {what} from {kwargs.get('provider', 'its source')}: check "
                "that source (a credential_process, the container or instance role, an "
                "assumed role) works for this process's user, then run talprov again "
                "(restart a running serve)")
    if isinstance(exc, ProfileNotFound):
        return (f"the AWS profile {kwargs.get('profile', '')} is not in the AWS config "
                "files: check the instance's profile setting and AWS_PROFILE")
    if isinstance(exc, _LOGIN_ERRORS):
        return ("the sign-in session of the AWS profile has expired or cannot be read: run "
                "`aws login` for the profile")
    for kind, problem in _CREDENTIAL_PROBLEMS:
        if isinstance(exc, kind):
            path = kwargs.get("path")
            return problem + (f" ({path})" if path and isinstance(exc, ConfigParseError) else "")
    return None


#: Why a call got no answer, by botocore's error (subclasses first).
_NO_ANSWER: tuple[tuple[tuple[type[BotoCoreError], ...], str], ...] = (
    ((ReadTimeoutError,), "no answer within the read timeout"),
    ((ConnectionClosedError,), "the endpoint closed the connection before answering"),
    ((ResponseStreamingError, IncompleteReadError), "the answer was cut off while it was read"),
)


def _connection_problem(exc: BotoCoreError) -> str:
    for kinds, problem in _NO_ANSWER:
        if isinstance(exc, kinds):
            return problem
    if isinstance(exc, EndpointConnectionError | ConnectionError | HTTPClientError):
        return f"endpoint unreachable ({connection_failure(exc)})"
    return ("the AWS SDK failed before AWS answered: check the instance's region and "
            "endpoint_url settings and the network")


def _invalid_parameters(exc: ParamValidationError, operation: str) -> InvalidRequest:
    # botocore's text quotes the offending values, which may be user-data: keep
    # only the parameter names.
    names = sorted(set(re.findall(r"parameter ([A-Za-z0-9_.\[\]]+)", str(exc))))
    return InvalidRequest(f"{operation}: invalid parameters {', '.join(names) or '?'}")


#: The URL of the AWS call this thread made last (set by :func:`note_endpoints`):
#: a ClientError does not say which endpoint answered it.
_calling: ContextVar[str | None] = ContextVar("talprov_aws_endpoint", default=None)
#: What answered the thread's last AWS call, as far as an operator may be told:
#: (service, HTTP status, content type). Never the body: it may echo a request.
_answered: ContextVar[tuple[str, int, str] | None] = ContextVar(
    "talprov_aws_answer", default=None)
#: The CA bundle of the thread's last AWS call, as (the setting that names it, its
#: path), or None when it verifies with the system's CAs (or not at all).
_ca_bundle: ContextVar[tuple[str, str] | None] = ContextVar("talprov_aws_ca", default=None)
_Client = TypeVar("_Client")


def note_endpoints(client: _Client, *, ca_bundle: tuple[str, str] | None = None) -> _Client:
    """``client``, made to note each call's URL before sending it and what
    answered it, so that :func:`translate` names the endpoint of a call that
    fails and says when the answer was not AWS's. A 2xx HTML page is refused
    (``NotAnAwsAnswer``) instead of being read as an empty answer.

    ``ca_bundle`` is (setting, path) of the CA bundle ``client`` verifies with:
    botocore takes only a path and loads the file again for every new
    connection, so a bundle deleted or emptied after start fails calls as a TLS
    error; :func:`translate` then names the setting and the file. Idempotent."""

    def note(params: dict[str, Any] | None = None, **_: Any) -> None:
        _answered.set(None)
        _ca_bundle.set(ca_bundle)
        url = (params or {}).get("url")
        if isinstance(url, str):
            _calling.set(url)

    def check(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        status = int(response_dict.get("status_code") or 0)
        headers = response_dict.get("headers") or {}
        kind = str(headers.get("content-type") or "")
        _answered.set((str(operation_model.service_model.service_id), status, kind))
        body = response_dict.get("body")
        if 200 <= status < 300 and isinstance(body, bytes) and _is_html(body):
            raise NotAnAwsAnswer()

    events = client.meta.events  # type: ignore[attr-defined]
    events.register("before-call", note, unique_id="talprov-note-endpoint")
    events.register("before-parse", check, unique_id="talprov-check-answer")
    return client


def _is_html(body: bytes) -> bool:
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def not_an_aws_answer() -> str:
    """Words for an answer AWS would not give: which service was expected, the HTTP
    status and content type seen (:func:`note_endpoints`). Never the body."""
    service, status, kind = _answered.get() or ("AWS", None, "")
    return foreign_answer(service, status, kind, "endpoint_url")


def _is_foreign_error(code: str, status: int) -> bool:
    """Whether botocore found no AWS error in a failed answer: no code at all, or
    the status it puts in its place for an empty or HTML body (S3 excepted: its
    HEAD answers have no body, so a bare status is AWS's own answer there)."""
    if not code:
        return True
    seen = _answered.get()
    if code != str(status) or seen is None:
        return False
    return seen[0] != "S3" or "html" in seen[2].lower()


def _from_client_error(exc: ClientError, operation: str) -> ProviderError:  # noqa: PLR0911
    code = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    aws_message = str(exc.response.get("Error", {}).get("Message", ""))[:MESSAGE_LIMIT]
    text = f"{operation}: {code}: {aws_message}" if aws_message else f"{operation}: {code}"
    if _is_foreign_error(code, status):
        return _foreign_error(status, operation)
    if code in THROTTLING_CODES:
        return Transient(f"{operation}: throttled by AWS ({code})")
    if status in RETRYABLE_CLIENT_STATUSES:
        return Transient(f"{operation}: HTTP {status} {code}")
    # Before the 5xx rule: EC2 reports InsufficientInstanceCapacity as a server error.
    if code in CAPACITY_CODES:
        return CapacityError(text)
    if code in QUOTA_CODES:
        return QuotaExceeded(f"{operation}: {code}: {QUOTA_CODES[code]}")
    if code in SERVER_CODES or status >= 500:
        return Transient(text)
    if code in CREDENTIAL_CODES or (status == 401 and code not in AUTH_CODES) or (
            code == "AuthFailure" and UNVALIDATED_CREDENTIALS in aws_message):
        return InstanceAccessRefused(text)
    if code in AUTH_CODES or status == 403:
        return AuthError(text)
    if code.endswith(".NotFound") and code.startswith(("InvalidInstanceID", "InvalidImportTask")):
        return NotFound(text)
    if code == "IdempotentParameterMismatch":
        return InvalidRequest(
            f"{operation}: a client token was reused with other parameters; the request's "
            "provider_data changed while it was being created"
        )
    if code.startswith(("Invalid", "Missing", "KMS.", "NoSuch")) or status == 400:
        return InvalidRequest(text, field=_field_for(code, aws_message))
    if 400 <= status < 500:
        # A client error this table does not know will not go away by retrying.
        return InvalidRequest(f"{operation}: HTTP {status} {text.removeprefix(operation + ': ')}")
    return ProviderError(text)


def _foreign_error(status: int, operation: str) -> ProviderError:
    """The error for a failed answer that is not AWS's, by its HTTP status alone:
    botocore's generic code ('' or the status) and message (the reason phrase)
    say nothing to an operator; what answered does."""
    text = f"{operation}: {not_an_aws_answer()}"
    if status in RETRYABLE_CLIENT_STATUSES or status >= 500:
        return Transient(text)
    if status == 401:
        return InstanceAccessRefused(text)
    if status == 403:
        return AuthError(text)
    if 400 <= status < 500:
        return InvalidRequest(text)
    return ProviderError(text)


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Run a block of boto3 calls, re-raising its errors translated by :func:`translate`."""
    try:
        yield
    except (ClientError, *NO_AWS_ANSWER) as exc:
        raise translate(exc, operation) from None
    except Boto3Error as exc:
        # boto3's S3 transfers wrap the call's error (S3UploadFailedError: "Failed to
        # upload <local path> to <bucket>/<key>: <the ClientError>", raised inside
        # its except): translate the error underneath, as for any other call.
        inner = exc.__context__
        if isinstance(inner, ClientError | BotoCoreError | ResponseParserError):
            raise translate(inner, operation) from None
        raise ProviderError(f"{operation}: the S3 transfer failed") from None

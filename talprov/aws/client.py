"""boto3 clients for one provider instance: region, endpoint, profile, assumed role.

botocore retries each call itself (mode "standard"); its attempts are kept low
(``AwsConfig.max_attempts``) because talprov retries whole steps with its own
jittered backoff, and the two would otherwise multiply. A call that got no
answer within its connect or read timeout is never tried again inside the call
(:func:`_timeouts_not_retried`): each attempt would wait the whole timeout
again, and talprov's backoff across passes retries it anyway.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from talprov.aws.config import AwsConfig
from talprov.aws.errors import aws_errors, note_endpoints
from talprov.aws.replies import LeanParsers

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

ASSUMED_ROLE_SECONDS = 3600
USER_AGENT = "talprov"


_C = TypeVar("_C")


class _HideRequestBodies(logging.Filter):
    """Keeps botocore's DEBUG dump of request parameters out of logs.

    That line carries RunInstances' UserData, i.e. the machine config with the
    cluster's CA keys. The operation name is kept, the parameters are not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Making request for") and isinstance(record.args, tuple):
            record.msg = "Making request for %s (parameters not logged)"
            record.args = record.args[:1]
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("botocore.endpoint")
    if not any(isinstance(f, _HideRequestBodies) for f in logger.filters):
        logger.addFilter(_HideRequestBodies())


_install_log_filter()

_loader_lock = threading.Lock()
_loader: botocore.loaders.Loader | None = None


def _shared_loader() -> botocore.loaders.Loader:
    """One service-model loader per process: parsing EC2's model costs ~0.3 s per session."""
    global _loader  # noqa: PLW0603 - a process-wide cache of immutable API models
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


def parse_timestamp(value: Any) -> datetime:
    """A timestamp of an AWS reply: ISO 8601 with a zone by ``datetime.fromisoformat``,
    anything else (epoch numbers, RFC 822, no zone) by botocore's own parser.

    botocore's default goes through dateutil for every value, and a
    DescribeInstances reply of 100 instances holds hundreds of them (launch,
    attach and usage times): about half of its parsing time.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    result: datetime = botocore.utils.parse_timestamp(value)
    return result


def _botocore_session(profile: str | None) -> botocore.session.Session:
    core = botocore.session.Session(profile=profile)
    core.register_component("data_loader", _shared_loader())
    # Instance replies parsed into the members talprov reads (see replies.py).
    parsers = LeanParsers(_shared_loader())
    parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
    core.register_component("response_parser_factory", parsers)
    return core


def _give_up_on_timeouts(caught_exception: BaseException | None = None, **_: Any) -> None:
    """botocore's ``needs-retry`` hook, run before its own retry handler: a
    timed-out attempt is raised at once, as botocore raises an error it does not
    retry. Answers (throttling, 5xx) and other failures go on to that handler.

    Raising is the only way a hook can keep botocore from retrying: the handler's
    answer wins over a hook that returns None."""
    if isinstance(caught_exception, ConnectTimeoutError | ReadTimeoutError):
        raise caught_exception


def _timeouts_not_retried(client: _C) -> _C:
    """``client``, whose calls that time out are not retried inside the call.

    botocore's standard mode retries a read or connect timeout like any
    transient error, up to ``max_attempts`` times, so an endpoint that accepts
    and never answers held each call for ``max_attempts`` x ``read_timeout``
    before talprov heard of it (and could say so, or be stopped between passes).
    talprov retries the step with its own backoff, so nothing is lost.
    Idempotent."""
    events = client.meta.events  # type: ignore[attr-defined]
    service = client.meta.service_model.service_id.hyphenize()  # type: ignore[attr-defined]
    # First on botocore's own retry handler's event (needs-retry.<service>).
    events.register_first(f"needs-retry.{service}", _give_up_on_timeouts,
                          unique_id="talprov-no-timeout-retries")
    return client


class _FixedProvider(CredentialProvider):
    """Hands botocore one (refreshable) credentials object, first in its chain."""

    METHOD = "talprov-assume-role"
    CANONICAL_NAME = "talprov-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


class AwsClients:
    """Lazily built, thread-safe boto3 clients sharing one session and retry policy.

    boto3 clients (not sessions) are safe to share between threads, which the
    concurrent launch path relies on. Construction makes no API call; building an
    assumed-role session calls STS only when credentials are first needed.
    """

    def __init__(self, config: AwsConfig, name: str | None = None) -> None:
        self.config = config
        #: The provider instance's name (errors name its settings), when known.
        self.name = name
        # boto3 sessions are not thread-safe: clients are built one at a time.
        self._lock = threading.RLock()
        #: Steps the reconciler runs at once on this instance (its ``concurrency``).
        self.concurrent_steps = 8

    def _botocore_config(self) -> Config:
        options: dict[str, Any] = {
            "region_name": self.config.region,
            "retries": {"mode": "standard", "total_max_attempts": self.config.max_attempts},
            "connect_timeout": self.config.connect_timeout,
            "read_timeout": self.config.read_timeout,
            "user_agent_extra": USER_AGENT,
            # A connection for every step running at once, each batch step's
            # parallel RunInstances and the listing: urllib3 discards (and warns
            # about) every connection beyond the pool's size.
            "max_pool_connections": max(
                10, self.concurrent_steps + self.config.launch_concurrency + 2),
        }
        if self.config.endpoint_url:
            # Emulators serve every bucket under one host.
            options["s3"] = {"addressing_style": "path"}
        return Config(**options)

    @cached_property
    def session(self) -> boto3.session.Session:
        """The boto3 session: the profile's credentials, or a role assumed with them."""
        with self._lock:
            base = boto3.session.Session(
                botocore_session=_botocore_session(self.config.profile),
                region_name=self.config.region,
            )
            if not self.config.role_arn:
                return base
            sts = self._noted(base.client("sts", **self._client_args()))
            role = _assumed_role_credentials(sts, self.config)
            core = _botocore_session(self.config.profile)
            core.get_component("credential_provider").insert_before("env", _FixedProvider(role))
            return boto3.session.Session(botocore_session=core, region_name=self.config.region)

    def _noted(self, client: _C) -> _C:
        """``client`` with :func:`note_endpoints`, told its CA bundle (a path
        ``verify_tls`` names) so that a bundle gone since start is named."""
        verify = self.config.verify_tls
        setting = f"providers.{self.name}.verify_tls" if self.name else "verify_tls"
        return note_endpoints(
            client, ca_bundle=(setting, verify) if isinstance(verify, str) else None)

    def _client_args(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.config.endpoint_url,
            "verify": self.config.verify_tls,
            "config": self._botocore_config(),
        }

    @cached_property
    def ec2(self) -> EC2Client:
        """The EC2 client."""
        with self._lock:
            # EC2 alone: a pass's calls, which the step's backoff retries. S3 (an
            # image upload's parts, each retried by botocore; one part's timeout
            # would fail the whole upload) and STS keep botocore's retries.
            return _timeouts_not_retried(
                self._noted(self.session.client("ec2", **self._client_args())))

    @cached_property
    def s3(self) -> S3Client:
        """The S3 client (only custom image imports use it)."""
        with self._lock:
            return self._noted(self.session.client("s3", **self._client_args()))

    @cached_property
    def sts(self) -> STSClient:
        """The STS client of the final (possibly assumed-role) session."""
        with self._lock:
            return self._noted(self.session.client("sts", **self._client_args()))


def _assumed_role_credentials(
    sts: STSClient, config: AwsConfig
) -> DeferredRefreshableCredentials:
    """Credentials for ``config.role_arn`` that botocore renews before they expire."""
    role_arn = config.role_arn
    assert role_arn is not None  # checked by the caller

    def fetch() -> dict[str, str]:
        args: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": config.role_session_name,
            "DurationSeconds": ASSUMED_ROLE_SECONDS,
        }
        if config.external_id:
            args["ExternalId"] = config.external_id
        with aws_errors("AssumeRole"):
            creds = sts.assume_role(**args)["Credentials"]
        expiry: datetime = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }

    return DeferredRefreshableCredentials(refresh_using=fetch, method=_FixedProvider.METHOD)

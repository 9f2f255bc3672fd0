"""Error translation, credentials, health, and the wait-running step's decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)

from talprov.aws import errors as aws_errors
from talprov.aws.config import AwsConfig
from talprov.aws.errors import InstanceLost, translate
from talprov.aws.provider import NOT_FOUND_LOOKS, AwsProvider
from talprov.aws.state import AwsState
from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InvalidRequest,
    NotFound,
    ProviderError,
    QuotaExceeded,
    StepTimeout,
    Transient,
)
from talprov.providers.protocol import StepContext
from talprov.providers.types import Machine, MachineState, Owner, Retry
from talprov.reconcile.runner import run_step
from tests.emulators.moto import REGION, MotoServer
from tests.unit.aws.helpers import Harness, make_request


@pytest.fixture(autouse=True)
def _no_call_seen_yet() -> Iterator[None]:
    # translate() names the endpoint the thread's last AWS call went to; these
    # errors are made up, so no earlier test's call may lend them its endpoint.
    token = aws_errors._calling.set(None)
    yield
    aws_errors._calling.reset(token)


def _client_error(code: str, status: int = 400, message: str = "") -> ClientError:
    reply: Any = {"Error": {"Code": code, "Message": message},
                  "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(reply, "RunInstances")


def test_an_authfailure_is_the_instances_only_when_ec2_cannot_validate_the_key() -> None:
    # EC2's error codes page: AuthFailure is also "trying to use an AMI for which
    # you do not have permissions", which is the request's, and stays permanent.
    unvalidated = _client_error(
        "AuthFailure", 401, "AWS was not able to validate the provided access credentials")
    assert type(translate(unvalidated, "DescribeImages")) is InstanceAccessRefused
    image = _client_error("AuthFailure", 400, "Not authorized for images: [ami-0abc]")
    error = translate(image, "RunInstances")
    assert type(error) is AuthError
    assert error.permanent


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("RequestLimitExceeded", 503, Transient),
    ("Throttling", 400, Transient),
    ("InternalError", 500, Transient),
    ("SomethingNew", 502, Transient),
    ("InsufficientInstanceCapacity", 500, CapacityError),  # EC2 sends it as a 500
    ("InsufficientInstanceCapacity", 400, CapacityError),
    ("Unsupported", 400, CapacityError),
    ("InstanceLimitExceeded", 400, QuotaExceeded),
    ("VcpuLimitExceeded", 400, QuotaExceeded),
    ("UnauthorizedOperation", 403, AuthError),
    ("AccessDenied", 403, AuthError),
    ("SomethingNew", 403, AuthError),
    ("AuthFailure", 401, AuthError),  # e.g. "Not authorized for images: [ami-…]"
    ("InvalidClientTokenId", 403, InstanceAccessRefused),
    ("SignatureDoesNotMatch", 403, InstanceAccessRefused),
    ("ExpiredToken", 400, InstanceAccessRefused),
    ("RequestExpired", 400, InstanceAccessRefused),
    ("SomethingNew", 401, InstanceAccessRefused),
    ("InvalidInstanceID.NotFound", 400, NotFound),
    ("InvalidParameterValue", 400, InvalidRequest),
    ("IdempotentParameterMismatch", 400, InvalidRequest),
])
def test_client_errors_map_to_talprov_errors(
    code: str, status: int, expected: type[ProviderError]
) -> None:
    assert type(translate(_client_error(code, status), "RunInstances")) is expected


@pytest.mark.parametrize("status", [404, 405, 409, 412, 413, 422])
def test_an_unlisted_4xx_is_a_permanent_error_naming_the_call_and_status(status: int) -> None:
    error = translate(_client_error("SomethingNew", status, "nope"), "PutObject")
    assert isinstance(error, InvalidRequest)
    assert error.permanent
    assert str(error).startswith(f"PutObject: HTTP {status} SomethingNew")


@pytest.mark.parametrize("status", [408, 425, 429])
def test_timeout_too_early_and_too_many_requests_stay_transient(status: int) -> None:
    error = translate(_client_error("SomethingNew", status), "PutObject")
    assert type(error) is Transient
    assert f"HTTP {status}" in str(error)


def test_invalid_requests_name_the_field() -> None:
    cases = {
        "InvalidSubnetID.NotFound": "provider_data.subnets",
        "InvalidGroup.NotFound": "provider_data.security_groups",
        "InvalidAMIID.Malformed": "provider_data.ami",
        "InvalidKeyPair.NotFound": "provider_data.key_name",
    }
    for code, field in cases.items():
        error = translate(_client_error(code), "RunInstances")
        assert isinstance(error, InvalidRequest)
        assert error.field == field
    error = translate(_client_error(
        "InvalidParameterValue", message="Value (xx) for parameter iamInstanceProfile.name is "
        "invalid. Invalid IAM Instance Profile name"), "RunInstances")
    assert isinstance(error, InvalidRequest)
    assert error.field == "provider_data.iam_instance_profile"


def test_quota_message_is_clear() -> None:
    error = translate(_client_error("VcpuLimitExceeded"), "RunInstances")
    assert "vCPU quota" in str(error)
    assert "Service Quotas" in str(error)


def test_parameter_errors_do_not_echo_values() -> None:
    exc = ParamValidationError(report="Invalid type for parameter UserData, value: "
                               "machine: {token: s3cr3t-value}, type: dict")
    error = translate(exc, "RunInstances")
    assert isinstance(error, InvalidRequest)
    assert "UserData" in str(error)
    assert "s3cr3t" not in str(error)


def test_connection_and_credential_errors() -> None:
    assert isinstance(translate(EndpointConnectionError(endpoint_url="http://x"), "X"), Transient)
    missing = translate(NoCredentialsError(), "X")
    assert isinstance(missing, Transient)  # the operator sets them and restarts
    assert "no AWS credentials found" in str(missing)
    plain = ValueError("not ours")
    assert translate(plain, "X") is plain


def test_assumed_role_credentials_come_from_sts(
    moto_server: MotoServer, harness_factory: Any
) -> None:
    harness = harness_factory(role_arn="arn:aws:iam::123456789012:role/talprov",
                              external_id="ext-1")
    credentials = harness.provider.clients.session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key != "testing"  # not the base credentials: moto's STS issued them
    assert harness.provider.health().ok
    harness.loop.add(make_request("w-0"))
    harness.loop.run_until_settled()
    assert len(harness.instances()) == 1


def test_health_reports_an_unreachable_endpoint_without_raising(tmp_path: Any) -> None:
    from tests.emulators.moto import free_port

    config = AwsConfig(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}",
                       max_attempts=1, connect_timeout=0.5)
    from talprov.providers.protocol import Runtime

    health = AwsProvider("aws-x", config, Runtime(cache_dir=tmp_path)).health()
    assert not health.ok
    assert "DescribeAvailabilityZones" in health.message


def test_health_ok_on_moto(harness: Harness) -> None:
    health = harness.provider.health()
    assert health.ok
    assert REGION in health.message


# ---------------------------------------------------------------------- wait-running


def _wait_ctx(harness: Harness, observed: Machine | None, started: float = 0.0,
              **state: Any) -> StepContext[Any, Any]:
    request = make_request("w-0")
    return StepContext(
        request=request, data=harness.provider.data_model.model_validate(request.provider_data),
        state=AwsState(infra_id="i-0123456789abcdef0", tagged=True, **state),
        owner=Owner("talprov-test", "aws-test"), runtime=harness.runtime, observed=observed,
        step_started_at=started or harness.clock(),
    )


def _machine(state: MachineState, ec2_state: str, **extra: str) -> Machine:
    return Machine(infra_id="i-0123456789abcdef0", state=state, request_id="w-0",
                   addresses=("10.0.0.5",), created_at=datetime.now(UTC),
                   extra={"ec2_state": ec2_state, **extra})


def test_wait_running_uses_the_observed_machine_without_calls(harness: Harness) -> None:
    wait = harness.provider.steps()[2].run
    before = harness.counter.total()
    pending = wait(_wait_ctx(harness, _machine(MachineState.PENDING, "pending")))
    assert isinstance(pending, Retry)
    ctx = _wait_ctx(harness, _machine(MachineState.RUNNING, "running"))
    assert wait(ctx) is None
    assert ctx.state.addresses == ["10.0.0.5"]
    assert harness.counter.total() == before


def test_wait_running_times_out(harness: Harness) -> None:
    wait = harness.provider.steps()[2]
    started = harness.clock()
    harness.clock.sleep(harness.provider.config.running_timeout + 1)
    with pytest.raises(StepTimeout, match="still pending"):
        run_step(wait, _wait_ctx(harness, _machine(MachineState.PENDING, "pending"),
                                 started=started))


def test_wait_running_reports_a_terminated_instance(harness: Harness) -> None:
    wait = harness.provider.steps()[2].run
    observed = _machine(MachineState.TERMINATED, "shutting-down",
                        state_reason="Server.InsufficientInstanceCapacity")
    with pytest.raises(InstanceLost, match="InsufficientInstanceCapacity") as info:
        wait(_wait_ctx(harness, observed))
    assert info.value.permanent


def test_wait_running_checks_by_id_when_the_listing_lost_the_instance(harness: Harness) -> None:
    wait = harness.provider.steps()[2].run
    first = _wait_ctx(harness, None)
    before = harness.counter.calls["DescribeInstances"]
    retry = wait(first)  # looked at once right away; EC2 may lag right after a launch
    assert isinstance(retry, Retry)
    assert retry.after == 1.0
    assert harness.counter.calls["DescribeInstances"] == before + 1
    with pytest.raises(InstanceLost, match="no longer exists"):
        wait(_wait_ctx(harness, None, wait_checks=NOT_FOUND_LOOKS))  # moto does not know it


def test_wait_running_backs_off_while_ec2_answers_pending(harness_factory: Any) -> None:
    harness = harness_factory(poll_interval=10.0)
    wait = harness.provider.steps()[2].run
    pending = _machine(MachineState.PENDING, "pending")
    gaps = []
    for looks in range(6):
        outcome = wait(_wait_ctx(harness, pending, wait_checks=looks))
        assert isinstance(outcome, Retry)
        gaps.append(outcome.after)
    # Soon after launch, then doubling, never beyond poll_interval.
    assert gaps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

"""A call that gets no answer within its timeout is not tried again inside the
call: talprov hears of it after one ``read_timeout`` (or ``connect_timeout``).

QA: ``reconcile --once`` against an endpoint that accepts and never answers
reported after about 3 x ``read_timeout``, because botocore's standard retries
(``max_attempts``, default 3) retried the read timeout on top of talprov's own
backoff across passes. Answers that say "try again" (throttling, 5xx) are still
retried by botocore within ``max_attempts``
(``test_resilience.py::test_botocore_standard_retries_absorb_a_short_throttle``),
and so is a connection closed before the answer: it costs no timeout.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError

from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.errors import aws_errors
from talprov.providers.errors import Transient
from tests.unit.aws.test_stop_while_unanswered import Blackhole

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def hole() -> Iterator[Blackhole]:
    blackhole = Blackhole()
    yield blackhole
    blackhole.close()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits botocore takes between the attempts of a call, recorded instead."""
    waits: list[float] = []
    monkeypatch.setattr("botocore.endpoint.time", types.SimpleNamespace(sleep=waits.append))
    return waits


def _clients(url: str, **config: Any) -> AwsClients:
    return AwsClients(AwsConfig(region=REGION, endpoint_url=url, **config), "ec2")


def _count_attempts(client: Any, fail_with: Exception | None = None) -> list[str]:
    """The operation of every attempt ``client`` sends; with ``fail_with``, each
    attempt fails with it instead of being sent."""
    sent: list[str] = []

    def attempt(request: Any, **_: Any) -> None:
        sent.append(request.url)
        if fail_with is not None:
            raise fail_with

    client.meta.events.register("before-send", attempt)
    return sent


def test_a_read_timeout_is_not_retried_inside_the_call(hole: Blackhole,
                                                      slept: list[float]) -> None:
    ec2 = _clients(hole.url, read_timeout=0.3, max_attempts=3).ec2
    sent = _count_attempts(ec2)
    with pytest.raises(Transient) as raised, aws_errors("DescribeInstances"):
        ec2.describe_instances()
    assert "no answer within the read timeout" in str(raised.value)
    assert len(sent) == 1, sent
    assert slept == []


#: A call of each client, by its service.
CALLS: dict[str, Any] = {
    "ec2": lambda client: client.describe_instances(),
    "s3": lambda client: client.head_object(Bucket="b", Key="k"),
    "sts": lambda client: client.get_caller_identity(),
}


def test_a_connect_timeout_is_not_retried_inside_the_call(slept: list[float]) -> None:
    ec2 = _clients("http://127.0.0.1:9", max_attempts=3).ec2
    sent = _count_attempts(ec2, ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(ConnectTimeoutError):
        CALLS["ec2"](ec2)
    assert len(sent) == 1, sent
    assert slept == []


@pytest.mark.parametrize("service", ["s3", "sts"])
@pytest.mark.parametrize("error", [ConnectTimeoutError, ReadTimeoutError])
def test_s3_and_sts_keep_botocores_timeout_retries(service: str, error: Any,
                                                    slept: list[float]) -> None:
    """Review: an image upload's parts (S3) are each retried by botocore; failing
    the whole multipart upload at one part's timeout would start it from zero at
    the step's next attempt, and on a slow link never finish. STS's AssumeRole
    refresh is rare and not a pass's call. Only EC2, the pass's calls, gives up."""
    client = getattr(_clients("http://127.0.0.1:9", max_attempts=3), service)
    sent = _count_attempts(client, error(endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(error):
        CALLS[service](client)
    assert len(sent) == 3, sent


def test_a_connection_closed_before_the_answer_is_still_retried(slept: list[float]) -> None:
    ec2 = _clients("http://127.0.0.1:9", max_attempts=3).ec2
    sent = _count_attempts(ec2, ConnectionClosedError(endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(ConnectionClosedError):
        ec2.describe_instances()
    assert len(sent) == 3, sent
    assert len(slept) == 2

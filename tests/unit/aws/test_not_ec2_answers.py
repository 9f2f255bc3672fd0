"""An endpoint that answers, but not as EC2 (a wrong endpoint_url, a web server, a
proxy's page): health and steps say so in words, with the endpoint, the HTTP status
and the content type, never the body or the credentials (QA: health showed only
"unhealthy: ResponseParserError", and a well-formed HTML page was "healthy: 0 zones").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.aws import errors as aws_errors
from talprov.aws.config import AwsConfig
from talprov.aws.instances import describe_one
from talprov.aws.provider import AwsProvider
from talprov.providers.errors import (
    AuthError,
    InstanceAccessRefused,
    InvalidRequest,
    Transient,
)
from talprov.providers.protocol import Runtime
from tests.emulators.webpage import CANARY, PAGE, WebPage, web_page

ACCESS_KEY = "AKIAQAMOTOCANARY0001"


@pytest.fixture
def endpoint() -> Iterator[WebPage]:
    with web_page() as served:
        yield served


@pytest.fixture
def provider(endpoint: WebPage, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-canary-9e2b")
    token = aws_errors._calling.set(None)
    config = AwsConfig(region="eu-west-1", endpoint_url=f"{endpoint.url}/some/path",
                       max_attempts=1)
    yield AwsProvider("aws-x", config, Runtime(cache_dir=tmp_path))
    aws_errors._calling.reset(token)


@pytest.mark.parametrize(("status", "content_type", "body", "words"), [
    (200, "text/html", PAGE, "200 OK"),  # read as "0 zones" before
    (200, "application/json", f'{{"note": "{CANARY}"}}', "200 OK"),
    (200, "text/plain", "", "200 OK"),
    (200, "text/xml", f"<note>{CANARY}</note>", "200 OK"),  # well-formed, not EC2's
    (404, "text/html", PAGE, "404 Not Found"),
    (403, "text/html", PAGE, "403 Forbidden"),
    (502, "text/html", PAGE, "502 Bad Gateway"),
])
def test_health_names_what_answered_instead_of_ec2(
    endpoint: WebPage, provider: AwsProvider,
    status: int, content_type: str, body: str, words: str,
) -> None:
    endpoint.page.status, endpoint.page.content_type, endpoint.page.body = (
        status, content_type, body)
    health = provider.health()
    assert not health.ok
    message = health.message
    assert message.startswith(f"DescribeAvailabilityZones at {endpoint.url}: "), message
    assert f"did not answer as EC2 (HTTP {words}, {content_type})" in message
    for secret in (CANARY, ACCESS_KEY, "secret-canary", "/some/path", "ResponseParserError"):
        assert secret not in message


@pytest.mark.parametrize(("status", "content_type", "expected"), [
    (200, "text/html", Transient),  # botocore would have read "no instances"
    (200, "application/json", Transient),
    (404, "text/html", InvalidRequest),
    (403, "text/html", AuthError),
    (401, "text/html", InstanceAccessRefused),
    (503, "text/html", Transient),
])
def test_a_step_call_that_ec2_did_not_answer_is_a_worded_error(
    endpoint: WebPage, provider: AwsProvider,
    status: int, content_type: str, expected: type[Exception],
) -> None:
    endpoint.page.status, endpoint.page.content_type = status, content_type
    with pytest.raises(expected) as raised:
        describe_one(provider.clients.ec2, "i-0123456789abcdef0")
    text = str(raised.value)
    assert text.startswith(f"DescribeInstances at {endpoint.url}: ")
    assert f"did not answer as EC2 (HTTP {status}" in text
    assert CANARY not in text

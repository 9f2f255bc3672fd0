"""An endpoint that answers, but not as EC2 (a wrong endpoint_url, a web server, a
proxy's page): health and steps say so in words, with the endpoint, the HTTP status
and the content type, never the body or the credentials (QA: health showed only
"unhealthy: ResponseParserError", and a well-formed HTML page was "healthy: 0 zones").
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.aws import errors as aws_errors
from talprov.aws.config import AwsConfig
from talprov.aws.instances import describe_one
from talprov.aws.provider import AwsProvider
from talprov.providers.errors import AuthError, InvalidRequest, Transient
from talprov.providers.protocol import Runtime

ACCESS_KEY = "AKIAQAMOTOCANARY0001"
BODY_CANARY = "body-canary-7c1d"


class Page:
    """What the fake endpoint answers to every request."""

    status = 200
    content_type = "text/html"
    body = f"<html><body>Welcome to nginx {BODY_CANARY}</body></html>"


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[Page]]]:
    page: type[Page] = type("ThisPage", (Page,), {})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            data = page.body.encode()
            self.send_response(page.status)
            self.send_header("content-type", page.content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/some/path", page
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def provider(endpoint: tuple[str, type[Page]], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-canary-9e2b")
    token = aws_errors._calling.set(None)
    config = AwsConfig(region="eu-west-1", endpoint_url=endpoint[0], max_attempts=1)
    yield AwsProvider("aws-x", config, Runtime(cache_dir=tmp_path))
    aws_errors._calling.reset(token)


def _says_what_answered(message: str, endpoint: str, status: str, kind: str) -> None:
    origin = endpoint.removesuffix("/some/path")
    assert message.startswith(f"DescribeAvailabilityZones at {origin}: "), message
    assert "did not answer as EC2" in message
    assert f"HTTP {status}" in message
    assert kind in message
    for secret in (BODY_CANARY, ACCESS_KEY, "secret-canary", "/some/path", "Error"):
        assert secret not in message


@pytest.mark.parametrize(("status", "content_type", "body", "words"), [
    (200, "text/html", Page.body, "200 OK"),  # read as "0 zones" before
    (200, "application/json", f'{{"note": "{BODY_CANARY}"}}', "200 OK"),
    (200, "text/plain", "", "200 OK"),
    (200, "text/xml", f"<note>{BODY_CANARY}</note>", "200 OK"),  # well-formed, not EC2's
    (404, "text/html", Page.body, "404 Not Found"),
    (403, "text/html", Page.body, "403 Forbidden"),
    (502, "text/html", Page.body, "502 Bad Gateway"),
])
def test_health_names_what_answered_instead_of_ec2(
    endpoint: tuple[str, type[Page]], provider: AwsProvider,
    status: int, content_type: str, body: str, words: str,
) -> None:
    url, page = endpoint
    page.status, page.content_type, page.body = status, content_type, body
    health = provider.health()
    assert not health.ok
    _says_what_answered(health.message, url, words, content_type)
    assert "ResponseParserError" not in health.message


@pytest.mark.parametrize(("status", "content_type", "expected"), [
    (200, "text/html", Transient),  # botocore would have read "no instances"
    (200, "application/json", Transient),
    (404, "text/html", InvalidRequest),
    (403, "text/html", AuthError),
    (503, "text/html", Transient),
])
def test_a_step_call_that_ec2_did_not_answer_is_a_worded_error(
    endpoint: tuple[str, type[Page]], provider: AwsProvider,
    status: int, content_type: str, expected: type[Exception],
) -> None:
    url, page = endpoint
    page.status, page.content_type = status, content_type
    with pytest.raises(expected) as raised:
        describe_one(provider.clients.ec2, "i-0123456789abcdef0")
    text = str(raised.value)
    assert text.startswith(f"DescribeInstances at {url.removesuffix('/some/path')}: ")
    assert f"did not answer as EC2 (HTTP {status}" in text
    assert BODY_CANARY not in text

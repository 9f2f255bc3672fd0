"""A 429/503 answer's Retry-After (from PVE or a proxy in front of it) is honoured:
the Transient carries the wait asked for, bounded, counted on the injected clock
for an HTTP-date (QA: every such answer waited a fixed 5 s whatever it asked)."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from talprov.providers.errors import MAX_RETRY_AFTER, Transient
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.errors import TRANSIENT_RETRY_AFTER
from talprov.testing import FakeClock

URL = "https://pve.invalid:8006"


class Answers(BaseAdapter):
    """Answers every request with the next canned (status, headers, body); no network."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.seen: list[str] = []

    def send(self, request: Any, *_args: Any, **_kwargs: Any) -> requests.Response:
        self.seen.append(f"{request.method} {request.url}")
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response._content = body
        response.reason = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "OK")
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def _client(clock: FakeClock, adapter: Answers, **config: Any) -> PveClient:
    settings = {"url": URL, "token_id": "root@pam!t", "token_secret": "s" * 36, **config}
    client = PveClient(ProxmoxConfig.model_validate(settings), clock=clock)
    client._session.mount("https://", adapter)
    return client


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


JSON = {"content-type": "application/json"}
PVE_ERROR = b'{"data":null}'


@pytest.mark.parametrize(("status", "header", "expected"), [
    (429, "7", 7.0),
    (503, "120", 120.0),
    (503, "86400", MAX_RETRY_AFTER),  # a day: bounded
    (429, "-5", 0.0),
    (503, None, TRANSIENT_RETRY_AFTER),  # nothing asked: the default
    (503, "soon", TRANSIENT_RETRY_AFTER),  # unreadable: the default
])
def test_retry_after_in_seconds_is_the_errors_wait(
    status: int, header: str | None, expected: float
) -> None:
    clock = FakeClock()
    headers = {**JSON, **({"Retry-After": header} if header is not None else {})}
    client = _client(clock, Answers((status, headers, PVE_ERROR)))
    with pytest.raises(Transient) as raised:
        client.get("read PVE version", "version")
    assert raised.value.retry_after == expected
    assert str(status) in str(raised.value)


def test_retry_after_as_an_http_date_counts_on_the_injected_clock() -> None:
    clock = FakeClock()
    asked = _http_date(clock() + 42)
    client = _client(clock, Answers((503, {**JSON, "Retry-After": asked}, PVE_ERROR)))
    with pytest.raises(Transient) as raised:
        client.get("read PVE version", "version")
    assert raised.value.retry_after == 42.0


def test_a_later_answer_without_retry_after_does_not_inherit_an_earlier_one() -> None:
    clock = FakeClock()
    adapter = Answers((429, {**JSON, "Retry-After": "60"}, PVE_ERROR),
                      (200, JSON, b'{"data":{"version":"8.2.4"}}'),
                      (503, JSON, PVE_ERROR))
    client = _client(clock, adapter)
    with pytest.raises(Transient) as first:
        client.get("read PVE version", "version")
    assert first.value.retry_after == 60.0
    assert client.get("read PVE version", "version") == {"version": "8.2.4"}
    with pytest.raises(Transient) as third:
        client.get("read PVE version", "version")
    assert third.value.retry_after == TRANSIENT_RETRY_AFTER


def test_the_login_honours_retry_after_too() -> None:
    clock = FakeClock()
    adapter = Answers((503, {**JSON, "Retry-After": "30"}, PVE_ERROR))
    settings = {"url": URL, "username": "root@pam", "password": "pw-canary-31f"}
    client = PveClient(ProxmoxConfig.model_validate(settings), clock=clock)
    client._session.mount("https://", adapter)
    with pytest.raises(Transient) as raised:
        client.get("read PVE version", "version")
    assert raised.value.retry_after == 30.0
    assert adapter.seen == [f"POST {URL}/api2/json/access/ticket"]
    assert "pw-canary" not in str(raised.value)

"""A vAPI Retry-After given as an HTTP-date is counted on the injected clock (the
runtime's, which the retries use too), not on the wall clock: with a FakeClock the
wait is exactly the date minus the fake now."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from talprov.providers.errors import Transient
from talprov.providers.protocol import Runtime
from talprov.testing import FakeClock
from talprov.vmware.provider import VSphereProvider
from tests.unit.vmware.test_vapi import _config

FAKE_NOW = datetime(2031, 5, 4, 12, 0, 0, tzinfo=UTC)


def busy_until(seconds: int) -> httpx.MockTransport:
    date = format_datetime(datetime.fromtimestamp(FAKE_NOW.timestamp() + seconds, UTC),
                           usegmt=True)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/com/vmware/cis/session"):
            return httpx.Response(200, json={"value": "session-1"})
        return httpx.Response(503, headers={"Retry-After": date})

    return httpx.MockTransport(answer)


def test_an_http_date_retry_after_counts_from_the_runtimes_clock(tmp_path: Path) -> None:
    clock = FakeClock(start=FAKE_NOW.timestamp())
    runtime = Runtime(cache_dir=tmp_path, clock=clock, sleep=clock.sleep)
    provider = VSphereProvider("vc", _config(), runtime)
    provider.vapi._transport = busy_until(42)  # before its first call opens a client
    with pytest.raises(Transient) as caught:
        provider.vapi.call("list tags", "GET", "/com/vmware/cis/tagging/tag")
    assert caught.value.retry_after == pytest.approx(42.0)
    clock.sleep(40.0)
    with pytest.raises(Transient) as later:
        provider.vapi.call("list tags", "GET", "/com/vmware/cis/tagging/tag")
    assert later.value.retry_after == pytest.approx(2.0)

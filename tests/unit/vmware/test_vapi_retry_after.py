"""A vCenter REST (vAPI) answer's Retry-After is honoured, bounded; without one the
fixed default applies (QA: every 429/503 waited 5 s whatever it asked)."""

from __future__ import annotations

import httpx
import pytest

from talprov.providers.errors import MAX_RETRY_AFTER, Transient
from talprov.vmware.errors import TRANSIENT_RETRY_AFTER, vapi_status_error


@pytest.mark.parametrize(("status", "header", "expected"), [
    (503, "40", 40.0),
    (429, "86400", MAX_RETRY_AFTER),
    (503, None, TRANSIENT_RETRY_AFTER),
    (500, "later", TRANSIENT_RETRY_AFTER),
])
def test_a_busy_answer_waits_what_it_asked(status: int, header: str | None,
                                           expected: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    answer = httpx.Response(status, headers=headers, json={"type": "x"},
                            request=httpx.Request("GET", "https://vc.example.test/api/tags"))
    error = vapi_status_error(answer, "list tags")
    assert isinstance(error, Transient)
    assert error.retry_after == expected
    assert str(error).startswith(f"list tags at https://vc.example.test:443: vCenter REST "
                                 f"answered {status}")

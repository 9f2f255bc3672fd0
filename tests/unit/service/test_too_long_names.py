"""An over-long id or set name is told in words naming the limit, as the CLI tells it
(QA: the API answered pydantic's "String should have at most 63 characters").
pydantic checks the length before the pattern, so the length is what is told."""

from __future__ import annotations

import pytest

from tests.unit.service.conftest import WRITE, Api, request_body
from tests.unit.service.test_sets import set_body

SETS = "/v1/machine-request-sets"
REQUESTS = "/v1/machine-requests"


@pytest.mark.parametrize(("method", "url", "body", "field", "longest"), [
    ("POST", REQUESTS, request_body("a" * 70), "id", 63),
    ("POST", SETS, set_body("s" * 60, 1), "name", 52),
    ("GET", f"{REQUESTS}/{'a' * 70}", None, "request_id", 63),
    ("PATCH", f"{SETS}/{'s' * 60}", {"machine_count": 1}, "name", 52),
])
def test_an_over_long_name_is_told_in_words_naming_the_limit(
        idle_api: Api, method: str, url: str, body: object, field: str, longest: int) -> None:
    response = idle_api.request(method, url, headers=WRITE,
                                **({"json": body} if body is not None else {}))
    assert response.status_code == 422, response.text
    problem = next(p for p in response.json()["detail"] if p["loc"][-1] == field)
    assert problem["msg"] == f"must be at most {longest} characters"
    assert "String should" not in response.text

"""Edges of the service found by a QA pass: each failed before its fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from talprov.errors import ConfigError
from talprov.service.config import parse_service_config
from tests.helpers import Home
from tests.unit.service.conftest import WRITE, WRITE_TOKEN, Api, open_api, request_body
from tests.unit.service.test_ui import sign_in


def test_two_tokens_with_one_secret_are_refused() -> None:
    # The first match won every call: the second token's access was unusable.
    same = r"tokens\[1\]: token 'b' has the same secret as tokens\[0\] \('a'\)"
    with pytest.raises(ConfigError, match=same):
        parse_service_config({"tokens": [
            {"name": "a", "value": "x" * 20, "access": "read"},
            {"name": "b", "value": "x" * 20, "access": "write"},
        ]})


def test_healthz_answers_head(idle_api: Api) -> None:
    response = idle_api.client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


def test_changes_since_the_year_one_is_everything_not_a_500(idle_api: Api) -> None:
    client = idle_api.client
    sign_in(client, WRITE_TOKEN)
    response = client.get("/ui/changes", params={"since": "0001-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert "watermark" in response.json()


def test_every_get_route_answers_head(idle_api: Api) -> None:
    """HEAD is GET without the body (RFC 9110, 9.3.2) on every route, not only
    /healthz: monitors and link checkers use it."""
    client = idle_api.client
    assert client.post("/v1/machine-requests", json=request_body("head-1"),
                       headers=WRITE).status_code == 201
    set_body = {**request_body("unused"), "name": "heads", "machine_count": 0}
    del set_body["id"]
    assert client.post("/v1/machine-request-sets", json=set_body,
                       headers=WRITE).status_code == 201, "set"
    sign_in(client, WRITE_TOKEN)
    concrete = {"{request_id}": "head-1", "{name}": "heads"}
    paths = [p for p, ops in client.get("/openapi.json").json()["paths"].items() if "get" in ops]
    paths += ["/docs", "/ui", "/ui/sign-in", "/ui/requests", "/ui/requests/head-1",
              "/ui/clusters", "/ui/changes"]
    assert "/v1/machine-requests/{request_id}/events" in paths
    for template in paths:
        path = template
        for placeholder, value in concrete.items():
            path = path.replace(placeholder, value)
        got = client.get(path, headers=WRITE)
        head = client.head(path, headers=WRITE)
        assert got.status_code == 200, (path, got.text)
        assert head.status_code == 200, (path, head.status_code, head.text)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path


@pytest.fixture
def failing_api(home: Home) -> Iterator[Api]:
    """The service with workers over a provider whose every create fails (capacity)."""
    home.providers["fake"]["fail_creates"] = True
    home.write_config()
    yield from open_api(home)


def test_failing_since_keeps_the_first_failure_across_retries(failing_api: Api) -> None:
    """The overview's "N requests with errors, since …" is when the trouble began:
    each retry of the failing step must not move it to the latest attempt."""
    client = failing_api.client
    assert client.post("/v1/machine-requests", json=request_body("since-1"),
                       headers=WRITE).status_code == 201

    def failures() -> list[datetime]:
        events = client.get("/v1/machine-requests/since-1/events", headers=WRITE).json()
        return [datetime.fromisoformat(e["at"]) for e in events
                if e["message"].startswith(("attempt ", "failed ("))]

    failing_api.wait_for(lambda: len(failures()) >= 2, timeout=60)
    first, second = failures()[:2]
    sign_in(client, WRITE_TOKEN)
    page = client.get("/ui").text
    shown = re.search(r'with errors, since <time datetime="([^"]+)"', page)
    assert shown is not None, page
    since = datetime.fromisoformat(shown[1])
    assert since <= first < second, (since, first, second)

"""Concurrent creates of one resource, and the request body cap."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from talprov.sets import RequestSet
from tests.helpers import Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.service.test_sets import set_body

CALLERS = 8


def all_at_once(call: Callable[[], Any], callers: int = CALLERS) -> list[Any]:
    """``call`` from ``callers`` threads released together."""
    start = threading.Barrier(callers)

    def run() -> Any:
        start.wait()
        return call()

    with ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(run) for _ in range(callers)]
        return [f.result() for f in futures]


def first_reads_together(
    get: Callable[[str], RequestSet | None], callers: int
) -> Callable[[str], RequestSet | None]:
    """``get`` whose first ``callers`` calls all return before any caller goes on.

    Later calls (a loser's re-read after its write was refused) pass straight through.
    """
    barrier = threading.Barrier(callers)
    tickets = iter(range(callers))
    lock = threading.Lock()

    def wrapped(name: str) -> RequestSet | None:
        found = get(name)
        with lock:
            waits = next(tickets, None) is not None
        if waits:
            barrier.wait(timeout=10)
        return found

    return wrapped


def test_concurrent_identical_request_posts_make_one_201(idle_api: Api) -> None:
    body = request_body("same-1")
    responses = all_at_once(
        lambda: idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (CALLERS - 1) + [201]
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1


def test_concurrent_identical_set_posts_make_one_201(
        idle_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every caller reads "no such set" before any of them writes: the race the
    # create-only write exists for.
    monkeypatch.setattr(idle_api.ctx.sets, "get",
                        first_reads_together(idle_api.ctx.sets.get, CALLERS))
    body = set_body("race", 2)
    responses = all_at_once(
        lambda: idle_api.request("POST", "/v1/machine-request-sets", json=body, headers=WRITE))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (CALLERS - 1) + [201], [r.text for r in responses]
    assert {r.json()["name"] for r in responses} == {"race"}


def test_concurrent_different_set_posts_one_wins_the_other_is_409(
        idle_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    real_get = idle_api.ctx.sets.get
    monkeypatch.setattr(idle_api.ctx.sets, "get", first_reads_together(real_get, 2))
    bodies = iter([set_body("split", 1), set_body("split", 3)])
    lock = threading.Lock()

    def post() -> Any:
        with lock:
            body = next(bodies)
        return idle_api.request("POST", "/v1/machine-request-sets", json=body, headers=WRITE)

    responses = all_at_once(post, callers=2)
    assert sorted(r.status_code for r in responses) == [201, 409]
    winner = next(r for r in responses if r.status_code == 201).json()
    stored = real_get("split")
    assert stored is not None
    assert stored.machine_count == winner["machine_count"]


@pytest.fixture
def small_api(home: Home) -> Iterator[Api]:
    yield from open_api(home, workers=False, max_body_bytes=4096)


def test_a_body_over_the_cap_is_413_and_nothing_is_stored(small_api: Api) -> None:
    big = request_body("big-1", labels={"note": "x" * 8000})
    response = small_api.request("POST", "/v1/machine-requests", json=big, headers=WRITE)
    assert response.status_code == 413
    assert "x" * 100 not in response.text
    assert_json_413(response)
    assert small_api.ctx.store.get_request("big-1") is None


def assert_json_413(response: Any) -> None:
    # QA: this was plain text "Content Too Large", unlike every other error body.
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert "4096" in detail
    assert "max_body_bytes" in detail


def test_a_chunked_body_over_the_cap_is_413(small_api: Api) -> None:
    payload = json.dumps(request_body("big-2", labels={"note": "y" * 8000})).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start:start + 1000]

    response = small_api.request("POST", "/v1/machine-requests", content=chunks(),
                                 headers={**WRITE, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert_json_413(response)
    assert small_api.ctx.store.get_request("big-2") is None


def test_a_body_under_the_cap_is_accepted(small_api: Api) -> None:
    response = small_api.request("POST", "/v1/machine-requests",
                                 json=request_body("small-1"), headers=WRITE)
    assert response.status_code == 201, response.text

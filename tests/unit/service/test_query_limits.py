"""GET /v1/machine-requests cannot be turned into a denial of service (issue 15,
hole 1): the label filters are capped, every list is bounded, every API call's
queries have a deadline, and they stop when the client leaves."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from talprov.service.guarding import QueryGuardMiddleware
from talprov.store import Store, StoreError
from talprov.store.guard import current_guard
from tests.helpers import Home
from tests.unit.service.conftest import READ, Api, open_api


def test_more_than_sixteen_label_filters_is_a_422_naming_label(idle_api: Api) -> None:
    sixteen = [f"k{n}=v" for n in range(16)]
    assert idle_api.request("GET", "/v1/machine-requests", params={"label": sixteen},
                            headers=READ).status_code == 200
    answer = idle_api.request("GET", "/v1/machine-requests",
                              params={"label": [*sixteen, "k16=v"]}, headers=READ)
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "label"]
    assert "16" in problem["msg"]


def test_a_list_without_limit_is_bounded(idle_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    real = idle_api.ctx.store.list_requests

    def spy(**kwargs: Any) -> Any:
        asked.append(kwargs["limit"])
        return real(**kwargs)

    monkeypatch.setattr(idle_api.ctx.store, "list_requests", spy)
    assert idle_api.request("GET", "/v1/machine-requests", headers=READ).status_code == 200
    assert asked == [1000]
    over = idle_api.request("GET", "/v1/machine-requests", params={"limit": 1001}, headers=READ)
    assert over.status_code == 422
    assert over.json()["detail"][0]["loc"] == ["query", "limit"]


def test_api_queries_past_the_deadline_answer_503(home: Home) -> None:
    for api in open_api(home, workers=False, query_timeout=1e-9):
        answer = api.request("GET", "/v1/machine-requests", headers=READ)
        assert answer.status_code == 503
        assert "store" in answer.json()["detail"]


SLOW_SQLITE = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
               "WHERE x < 400000000) SELECT count(*) FROM n")


def test_a_client_that_leaves_stops_its_query(tmp_path: Any) -> None:
    """The middleware sees ``http.disconnect`` and the running query is interrupted."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    outcome: dict[str, Any] = {}

    def slow_query() -> None:
        started = time.monotonic()
        try:
            with store._read() as conn:
                conn.exec_driver_sql(SLOW_SQLITE)
            outcome["result"] = "finished"
        except StoreError:
            outcome["result"] = "stopped"
        outcome["seconds"] = time.monotonic() - started

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        assert current_guard() is not None
        await asyncio.to_thread(slow_query)  # copies the context, as FastAPI does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop()
            await asyncio.sleep(0.3)  # the client goes away while the query runs
            return {"type": "http.disconnect"}

        async def send(_message: Any) -> None:
            return None

        middleware = QueryGuardMiddleware(app, seconds=600)
        await asyncio.wait_for(middleware({"type": "http", "method": "GET", "path": "/x"},
                                          receive, send), timeout=20)

    asyncio.run(scenario())
    store.close()
    assert outcome["result"] == "stopped"
    assert outcome["seconds"] < 10

"""``talprov serve`` stopping while creates arrive: each create that was answered
201/200 is in the store, and none is left waiting (creates are written in
shared turns by the calls themselves, so the stop's wait for in-flight calls
covers them)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until

CREATES = 60


def test_sigterm_during_a_burst_of_creates_loses_none_it_answered(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "workers": False, "stop_timeout": 10})
    server = ServeProcess(home.env(), home.root)
    answers: dict[str, Any] = {}
    lock = threading.Lock()

    def create(index: int) -> None:
        request_id = f"stop-{index:03d}"
        try:
            with httpx.Client(base_url=server.url, timeout=20) as client:
                outcome: Any = client.post("/v1/machine-requests",
                                           json=request_body(request_id), headers=WRITE
                                           ).status_code
        except httpx.HTTPError as exc:  # refused or cut off by the stop: not answered
            outcome = type(exc).__name__
        with lock:
            answers[request_id] = outcome

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CREATES)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) >= 5, 30, "the first creates to be answered")
    code = server.terminate(timeout=30)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a create was left waiting"
    assert code == 0, server.output()
    assert len(answers) == CREATES
    created = sorted(i for i, outcome in answers.items() if outcome in (200, 201))
    assert len(created) >= 5
    assert all(outcome in (200, 201) or isinstance(outcome, str)
               for outcome in answers.values()), answers
    with Store(home.store_url) as store:
        stored = {record.id for record in store.list_requests()}
    assert set(created) <= stored, sorted(set(created) - stored)

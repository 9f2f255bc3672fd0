"""A request set sealed with another TALPROV_STORE_KEY: shown as unreadable, shrinks,
is deleted, and set aside by the run loop with one warning, never a 503."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from talprov.runloop import RunLoop
from talprov.store.crypto import SecretCodec
from talprov.store.schema import request_sets
from tests.helpers import Home
from tests.unit.service.conftest import READ, WRITE, Api, open_api, request_body

OTHER_KEY = "the key of another installation"
SECRET = "machine: {token: set-secret-canary}"


@pytest.fixture
def keyed_api(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The service, without workers, over a store sealed with its own key."""
    monkeypatch.setenv("TALPROV_STORE_KEY", "this installation's own key, 32 bytes or more")
    yield from open_api(home, workers=False)


def sealed_elsewhere(api: Api, name: str, count: int) -> dict[str, object]:
    """Create set ``name`` and re-seal its secrets as another installation's key would."""
    body = {**request_body("unused", config=SECRET), "name": name,
            "machine_count": count}
    del body["id"]
    created = api.request("POST", "/v1/machine-request-sets", json=body, headers=WRITE)
    assert created.status_code == 201, created.text
    codec = SecretCodec(OTHER_KEY)
    with api.ctx.store._write() as conn:  # what a store with another key had written
        conn.execute(request_sets.update().where(request_sets.c.name == name).values(
            machine_config=codec.encode(SECRET), join_api_url=None))
    return body


def sealed_columns(api: Api, name: str) -> tuple[str, str | None]:
    with api.ctx.store._read() as conn:
        row = conn.execute(sa.select(request_sets.c.machine_config, request_sets.c.join_api_url)
                           .where(request_sets.c.name == name)).one()
    return row[0], row[1]


def test_an_unreadable_set_is_listed_shown_shrunk_and_deleted(keyed_api: Api) -> None:
    api = keyed_api
    sealed_elsewhere(api, "kaset", 2)
    other = {**request_body("unused"), "name": "fine", "machine_count": 1}
    del other["id"]
    assert api.request("POST", "/v1/machine-request-sets", json=other,
                       headers=WRITE).status_code == 201
    sealed = sealed_columns(api, "kaset")

    listed = api.request("GET", "/v1/machine-request-sets", headers=READ)
    assert listed.status_code == 200, listed.text
    views = {item["name"]: item for item in listed.json()["items"]}
    assert views["fine"]["unreadable"] is None
    reason = views["kaset"]["unreadable"]
    assert "TALPROV_STORE_KEY differs" in reason
    assert OTHER_KEY not in listed.text
    assert "canary" not in listed.text
    assert views["kaset"]["config_sha256"] is None
    assert {m["id"] for m in views["kaset"]["members"]} == {"kaset-0", "kaset-1"}

    shown = api.request("GET", "/v1/machine-request-sets/kaset", headers=READ)
    assert shown.status_code == 200, shown.text
    assert shown.json()["unreadable"] == reason

    grow = api.request("PATCH", "/v1/machine-request-sets/kaset", json={"machine_count": 3},
                       headers=WRITE)
    assert grow.status_code == 409, grow.text
    assert "cannot grow" in grow.json()["detail"]
    shrink = api.request("PATCH", "/v1/machine-request-sets/kaset", json={"machine_count": 1},
                         headers=WRITE)
    assert shrink.status_code == 200, shrink.text
    assert shrink.json()["machine_count"] == 1
    assert sorted(m["stage"] for m in shrink.json()["members"]) == ["deprovisioning", "pending"]
    assert sealed_columns(api, "kaset") == sealed  # the sealed secrets are kept as they were

    deleted = api.request("DELETE", "/v1/machine-request-sets/kaset", headers=WRITE)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["deleting"] is True
    assert {m["stage"] for m in deleted.json()["members"]} == {"deprovisioning"}
    assert sealed_columns(api, "kaset") == sealed

    # With the right key the set reads back whole: nothing was overwritten.
    record = api.ctx.store.get_request_set("kaset")
    assert record is not None
    assert record.unreadable is not None
    assert SecretCodec(OTHER_KEY).decode(sealed[0]) == SECRET


def test_the_run_loop_sets_an_unreadable_set_aside_with_one_warning(
    keyed_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = keyed_api
    sealed_elsewhere(api, "kaset", 2)
    for member in ("kaset-0", "kaset-1"):  # members gone: a readable set would recreate them
        api.ctx.store.request_deletion(member)
    loop = RunLoop(api.ctx.store, api.ctx.handles, api.ctx.runtime)
    try:
        with caplog.at_level(logging.WARNING):
            reports = [loop.run_round() for _ in range(3)]
    finally:
        loop.close()
    assert not [e for r in reports for e in r.errors if "kaset" in e]
    warnings = [r.getMessage() for r in caplog.records if "kaset" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("request set kaset set aside")
    assert warnings[0].count("request set kaset") == 1
    assert "TALPROV_STORE_KEY differs" in warnings[0]
    assert OTHER_KEY not in warnings[0]
    live = [r.request.id for r in api.ctx.store.list_requests()
            if r.request.id.startswith("kaset-") and r.stage.value != "deprovisioning"]
    assert live == []  # set aside: no member made without its config

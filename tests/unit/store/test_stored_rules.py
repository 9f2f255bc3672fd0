"""Requests stored under older, looser rules stay readable after the rules tightened.

A join URL with a path or over plain HTTP, or a version such as ``v1.13.09``,
was accepted before talprov checked them as Talos does. New requests are now
refused, but a store that already holds such a request must still list it,
run passes past it and delete it: otherwise one old row fails every pass.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from pydantic import SecretStr, ValidationError

from talprov.providers.types import STORED, JoinSpec, MachineRequest
from talprov.store.store import Store


def test_new_requests_get_the_strict_rules_and_stored_ones_the_old() -> None:
    body = {"id": "old-1", "provider": "p", "talos_version": "v1.13.09",
            "join": {"api_url": "http://omni.example/join?jointoken=x"}}
    with pytest.raises(ValidationError) as caught:
        MachineRequest.model_validate(body)
    fields = {".".join(str(p) for p in err["loc"]) for err in caught.value.errors()}
    assert fields == {"talos_version", "join.api_url"}
    stored = MachineRequest.model_validate(body, context=STORED)
    assert stored.talos_version == "v1.13.09"
    assert stored.join is not None
    assert stored.join.api_url.get_secret_value().startswith("http://")


def test_a_store_row_written_under_the_old_rules_is_still_listed(store: Store) -> None:
    request = MachineRequest(
        id="old-2", provider="p", talos_version="v1.13.9",
        join=JoinSpec(api_url=SecretStr("https://omni.example:8090?jointoken=x")))
    store.create_request(request)
    # What an older talprov could have written: a version the strict syntax refuses.
    with store._write() as connection:
        row = connection.execute(sa.text("SELECT body FROM requests WHERE id = 'old-2'")).one()
        body = json.loads(row.body)
        body["talos_version"] = "v1.13.09"
        connection.execute(sa.text("UPDATE requests SET body = :body WHERE id = 'old-2'"),
                           {"body": json.dumps(body)})
    [record] = store.list_requests()
    assert record.request.talos_version == "v1.13.09"
    store.request_deletion("old-2")
    assert store.get_request("old-2") is not None

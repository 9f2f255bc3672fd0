"""Error bodies: a store failure says nothing about the store; a body sent without
JSON content type is told so."""

from __future__ import annotations

import logging

import pytest

from talprov.store.errors import StoreError
from tests.unit.service.conftest import WRITE, Api

DETAIL = ("store postgresql+psycopg://talprov@db-7.internal:5433/talprov: "
          "value too long for type character varying(63)")


def test_store_error_is_503_without_internals(idle_api: Api, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def broken(_request_id: str) -> None:
        raise StoreError(DETAIL)

    monkeypatch.setattr(idle_api.ctx.store, "get_request", broken)
    with caplog.at_level(logging.WARNING, logger="talprov.service"):
        response = idle_api.request("GET", "/v1/machine-requests/any-1", headers=WRITE)
    assert response.status_code == 503
    assert "db-7.internal" not in response.text
    assert "character varying" not in response.text
    assert "server log" in response.json()["detail"]
    # The operator still gets the whole story.
    assert any("db-7.internal" in r.getMessage() and "/v1/machine-requests/any-1"
               in r.getMessage() for r in caplog.records)


def test_body_without_json_content_type_says_so(idle_api: Api) -> None:
    text = '{"id": "ct-1", "provider": "fake", "talos_version": "v1.13.9"}'
    for headers in ({}, {"Content-Type": "text/plain"}):
        response = idle_api.request("POST", "/v1/machine-requests", content=text,
                                    headers={**WRITE, **headers})
        assert response.status_code == 415  # (tests/unit/service/test_qa_media_type.py)
        assert "Content-Type: application/json" in response.json()["detail"]
    # A JSON body that is not an object keeps the validator's own message.
    listed = idle_api.request("POST", "/v1/machine-requests", json=[1], headers=WRITE)
    assert "Content-Type" not in listed.json()["detail"][0]["msg"]


def test_a_provider_out_of_scope_is_refused_without_repeating_it(idle_api: Api) -> None:
    # Error bodies never repeat what was sent: a provider field is free text, and a
    # secret pasted into the wrong field must not come back in the answer.
    from tests.unit.service.conftest import OTHER, request_body

    sent = "pasted-SECRET-4d1f"
    created = idle_api.request("POST", "/v1/machine-requests",
                               json=request_body("echo-1", provider=sent), headers=OTHER)
    listed = idle_api.request("GET", "/v1/machine-requests", params={"provider": sent},
                              headers=OTHER)
    for response in (created, listed):
        assert response.status_code == 403
        assert sent not in response.text
        assert "elsewhere" in response.json()["detail"]  # the token's name still helps

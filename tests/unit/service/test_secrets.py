"""Machine configs, join URLs and provider credentials never leave the service."""

from __future__ import annotations

import hashlib
import logging

import pytest

from tests.helpers import CANARY_CONFIG, CANARY_CREDENTIAL, WORKER_CONFIG
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import READ, WRITE, Api, request_body

JOIN_URL = f"https://omni.example/?jointoken={CANARY_CONFIG}"


def test_canaries_never_in_responses_or_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def call(method: str, url: str, expect: int = 200,
             **kwargs: object) -> dict[str, object] | list[object]:
        response = api.request(method, url, **kwargs)
        assert response.status_code == expect, (url, response.text)
        seen.append(response.text)
        seen.append(str(response.headers))
        return response.json() if "json" in response.headers.get("content-type", "") else []

    body = request_body("secret-1", config=WORKER_CONFIG,
                        join={"api_url": JOIN_URL, "mode": "kernel_args"})
    created = call("POST", "/v1/machine-requests", 201, json=body, headers=WRITE)
    assert isinstance(created, dict)
    assert created["config_sha256"] == hashlib.sha256(WORKER_CONFIG.encode()).hexdigest()
    assert created["join"] is True
    set_body = {**request_body("x", config=WORKER_CONFIG), "name": "sec", "machine_count": 1}
    del set_body["id"]
    call("POST", "/v1/machine-request-sets", 201, json=set_body, headers=WRITE)
    api.wait_for(lambda: api.stages() == {"secret-1": "provisioned", "sec-0": "provisioned"})

    # Bad bodies that carry secrets: the 422s must not echo them.
    call("POST", "/v1/machine-requests", 422, headers=WRITE,
         json=request_body("secret-2", config=WORKER_CONFIG, bogus=1))
    call("POST", "/v1/machine-requests", 422, headers=WRITE,
         json=request_body("secret-2", join={"api_url": JOIN_URL, "extra": CANARY_CONFIG}))
    call("POST", "/v1/machine-requests", 422, headers=WRITE,
         json=request_body("secret-2", config=f"machine: [{CANARY_CONFIG}\n  x: :"))
    call("POST", "/v1/machine-requests", 422, headers=WRITE,
         json=request_body("secret-2", config={"inline": CANARY_CONFIG}))
    call("POST", "/v1/machine-requests", 422, headers=WRITE,
         json=request_body("secret-2", join={"api_url": 42, "mode": CANARY_CONFIG}))
    # A different body under the same id: the conflict names the id only.
    call("POST", "/v1/machine-requests", 409, headers=WRITE,
         json=request_body("secret-1", config=WORKER_CONFIG + "# changed\n"))

    for url in ("/v1/machine-requests", "/v1/machine-requests/secret-1",
                "/v1/machine-requests/secret-1/events", "/v1/machine-request-sets",
                "/v1/machine-request-sets/sec", "/v1/providers", "/metrics", "/openapi.json"):
        call("GET", url, headers=READ)
    call("DELETE", "/v1/machine-requests/secret-1", 202, headers=WRITE)
    api.wait_for(lambda: "secret-1" not in api.stages())

    text = "\n".join(seen) + "\n".join(r.getMessage() for r in caplog.records)
    assert CANARY_CONFIG not in text
    assert CANARY_CREDENTIAL not in text
    # The secret did reach the machine: it was not lost on the way.
    (machine,) = Cloud(api.home.cloud_path()).machines()
    assert CANARY_CONFIG in machine["user_data"]


def test_openapi_marks_secrets_write_only(idle_api: Api) -> None:
    schema = idle_api.request("GET", "/openapi.json").json()
    create = schema["components"]["schemas"]["MachineRequestCreate"]["properties"]
    config = create["config"]["anyOf"][0]
    assert config["writeOnly"] is True
    assert config["format"] == "password"
    view = schema["components"]["schemas"]["MachineRequestView"]["properties"]
    assert "config" not in view
    assert "config_sha256" in view
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

"""``POST /v1/machine-requests/{id}/retry``: what `talprov machine retry` does, over HTTP.

QA: the CLI could put a failed request back to work, the API (what an
Omni-style orchestrator uses) could not.
"""

from __future__ import annotations

from talprov.providers.types import Stage
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import OTHER, READ, WRITE, Api, request_body


def fail(api: Api, request_id: str, error: str) -> None:
    record = api.ctx.store.get_request(request_id)
    assert record is not None
    api.ctx.store.note_observed(request_id, expected_version=record.version,
                                stage=Stage.FAILED, error=error)


def test_retry_puts_a_failed_request_back_to_work(idle_api: Api) -> None:
    api = idle_api
    assert api.request("POST", "/v1/machine-requests", json=request_body("r-1"),
                       headers=WRITE).status_code == 201
    fail(api, "r-1", "ensure-machine: out of capacity: none left")

    assert api.request("POST", "/v1/machine-requests/r-1/retry",
                       headers=READ).status_code == 403
    assert api.request("POST", "/v1/machine-requests/r-1/retry",
                       headers=OTHER).status_code == 404  # out of scope looks absent
    assert api.request("POST", "/v1/machine-requests/nope/retry",
                       headers=WRITE).status_code == 404
    retried = api.request("POST", "/v1/machine-requests/r-1/retry", headers=WRITE)
    assert retried.status_code == 200, retried.text
    assert retried.json()["stage"] == "pending"
    assert retried.json()["error"] is None
    again = api.request("POST", "/v1/machine-requests/r-1/retry", headers=WRITE)
    assert again.status_code == 200  # idempotent: still pending
    assert again.json()["stage"] == "pending"


def test_only_a_failed_request_can_be_retried(idle_api: Api) -> None:
    api = idle_api
    api.request("POST", "/v1/machine-requests", json=request_body("r-2"), headers=WRITE)
    api.request("DELETE", "/v1/machine-requests/r-2", headers=WRITE)
    refused = api.request("POST", "/v1/machine-requests/r-2/retry", headers=WRITE)
    assert refused.status_code == 409
    assert "deprovisioning" in refused.json()["detail"]


def test_a_retried_lost_machine_is_made_again(api: Api) -> None:
    api.request("POST", "/v1/machine-requests", json=request_body("r-3"), headers=WRITE)
    api.wait_for(lambda: api.stages().get("r-3") == "provisioned")
    cloud = Cloud(api.home.cloud_path())
    with cloud.connect() as db:
        db.execute("DELETE FROM machines")
    api.wait_for(lambda: api.stages().get("r-3") == "failed")
    retried = api.request("POST", "/v1/machine-requests/r-3/retry", headers=WRITE)
    assert retried.status_code == 200, retried.text
    api.wait_for(lambda: api.stages().get("r-3") == "provisioned" and len(cloud.machines()) == 1)

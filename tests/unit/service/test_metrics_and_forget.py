"""/metrics exposes stage counts, step durations, provider errors; force-forget is audited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Home
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import READ, WRITE, Api, open_api, request_body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, parsed by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def api_with_broken(home: Home) -> Iterator[Api]:
    home.providers["broken"] = {"type": "file", "path": home.cloud_path("broken"),
                                "fail_creates": True}
    home.write_config()
    yield from open_api(home)


def test_metrics_show_stage_counts_durations_and_errors(api_with_broken: Api) -> None:
    api = api_with_broken
    for n in range(3):
        api.request("POST", "/v1/machine-requests", json=request_body(f"m-{n}"), headers=WRITE)
    api.request("POST", "/v1/machine-requests",
                json=request_body("doomed", provider="broken"), headers=WRITE)
    api.wait_for(lambda: api.stages() == {"m-0": "provisioned", "m-1": "provisioned",
                                          "m-2": "provisioned", "doomed": "failed"})
    response = api.request("GET", "/metrics", headers=WRITE)  # all providers
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return values[(name, frozenset(labels.items()))]

    assert value("talprov_requests", provider="fake", stage="provisioned") == 3
    assert value("talprov_requests", provider="fake", stage="pending") == 0
    assert value("talprov_requests", provider="broken", stage="failed") == 1
    assert value("talprov_queue_depth", provider="fake") == 0
    ensure = value("talprov_step_duration_seconds_count", provider="fake", step="ensure-machine")
    assert ensure >= 3
    assert value("talprov_step_duration_seconds_bucket", provider="fake",
                 step="ensure-machine", le="+Inf") == ensure
    # capacity_attempts (3) failed creates before the request gave up.
    assert value("talprov_provider_errors_total", provider="broken",
                 operation="ensure-machine", error="CapacityError") == 3
    assert value("talprov_reconcile_passes_total") >= 1
    # The read token is scoped to "fake": it sees none of "broken"'s series.
    scoped = api.request("GET", "/metrics", headers=READ).text
    assert 'provider="broken"' not in scoped
    assert samples(scoped)[("talprov_requests", frozenset({("provider", "fake"),
                                                            ("stage", "provisioned")}))] == 3
    assert ("talprov_reconcile_passes_total", frozenset()) in samples(scoped)


def test_queue_depth_counts_waiting_requests(idle_api: Api) -> None:
    for n in range(4):
        idle_api.request("POST", "/v1/machine-requests", json=request_body(f"q-{n}"),
                         headers=WRITE)
    values = samples(idle_api.request("GET", "/metrics", headers=READ).text)
    assert values[("talprov_queue_depth", frozenset({("provider", "fake")}))] == 4
    assert values[("talprov_requests",
                   frozenset({("provider", "fake"), ("stage", "pending")}))] == 4


def test_force_forget_is_audited_and_leaves_the_machine(api: Api) -> None:
    api.request("POST", "/v1/machine-requests", json=request_body("orphan"), headers=WRITE)
    api.wait_for(lambda: api.stages().get("orphan") == "provisioned")
    missing = api.request("POST", "/v1/machine-requests/orphan/forget", json={},
                          headers=WRITE)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "reason"]
    record = api.ctx.store.get_request("orphan")
    assert record is not None
    assert record.infra_id
    response = api.request("POST", "/v1/machine-requests/orphan/forget",
                           json={"reason": "account closed"}, headers=WRITE)
    assert response.status_code == 200
    assert response.json() == {
        "id": "orphan", "actor": "omni", "reason": "account closed",
        "left_behind": f"its provider was not called: its machine {record.infra_id} is left "
                       "as it is, and no talprov command removes it any more: remove it "
                       "with the provider's own tools if it is not to stay"}
    assert api.request("GET", "/v1/machine-requests/orphan", headers=WRITE).status_code == 404
    (entry,) = api.ctx.store.audit_log()
    assert (entry.request_id, entry.actor, entry.reason) == ("orphan", "omni", "account closed")
    # The provider was not called: the machine is still there, now unmanaged.
    assert [m["request_id"] for m in Cloud(api.home.cloud_path()).machines()] == ["orphan"]
    again = api.request("POST", "/v1/machine-requests/orphan/forget",
                        json={"reason": "twice"}, headers=WRITE)
    assert again.status_code == 404


@pytest.fixture
def api_with_locked(home: Home) -> Iterator[Api]:
    # An empty api_secret makes the file provider's listing raise AuthError.
    home.providers["locked"] = {"type": "file", "path": home.cloud_path("locked"),
                                "api_secret": ""}
    home.write_config()
    yield from open_api(home)


def test_an_instance_whose_listing_fails_is_shown_down(api_with_locked: Api) -> None:
    """Issue 14 item 2: the blocking error is on the request, in /metrics and in
    /v1/providers (before: a warning in the log only, nothing on the request)."""
    api = api_with_locked
    api.request("POST", "/v1/machine-requests",
                json=request_body("blocked", provider="locked"), headers=WRITE)

    def blocked_error() -> str:
        body = api.request("GET", "/v1/machine-requests/blocked", headers=WRITE).json()
        return str(body.get("error") or "")

    api.wait_for(lambda: "credentials refused" in blocked_error())
    assert "next attempt" in blocked_error()
    # The write token sees every instance; the read token only "fake".
    values = samples(api.request("GET", "/metrics", headers=WRITE).text)
    assert values[("talprov_provider_up", frozenset({("provider", "locked")}))] == 0
    assert values[("talprov_provider_up", frozenset({("provider", "fake")}))] == 1
    providers = api.request("GET", "/v1/providers", headers=WRITE).json()["items"]
    locked = next(p for p in providers if p["name"] == "locked")
    assert locked["health"]["ok"] is False
    assert "credentials refused" in locked["health"]["message"]


@pytest.fixture
def metal_api(home: Home) -> Iterator[Api]:
    """The idle service with a bare-metal instance ``metal`` beside ``fake``."""
    home.providers["metal"] = {"type": "baremetal",
                               "inventory": str(home.root / "inventory.sqlite"),
                               "boot_url": "http://127.0.0.1:9",
                               "mirror_dir": str(home.root / "mirror")}
    home.write_config()
    yield from open_api(home, workers=False)


def test_forget_of_a_bare_metal_request_names_the_release_that_frees_its_machine(
        metal_api: Api) -> None:
    """QA: `talprov machine forget` says a bare-metal machine stays held until
    `talprov baremetal release NAME`; the API's forget said nothing of it."""
    from pydantic import SecretStr

    from talprov.providers.types import MachineRequest, Stage

    api, store = metal_api, metal_api.ctx.store
    for request_id in ("held", "unplaced"):
        store.create_request(MachineRequest(
            id=request_id, provider="metal", talos_version="v1.13.9",
            machine_config=SecretStr("version: v1alpha1\n")))
    record = store.get_request("held")
    assert record is not None
    store.save_progress(
        "held", expected_version=record.version, stage=Stage.PROVISIONING, step_index=1,
        step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
        step_started_at=None, infra_id="m0", machine_uuid=None, addresses=(), events=())

    def forget(request_id: str) -> str:
        response = api.request("POST", f"/v1/machine-requests/{request_id}/forget",
                               json={"reason": "rack moved"}, headers=WRITE)
        assert response.status_code == 200, response.text
        return str(response.json()["left_behind"])

    assert forget("held") == ("its bare-metal machine m0 stays held, not wiped, until "
                              "`talprov baremetal release m0` frees it")
    assert forget("unplaced") == (
        "its bare-metal machine, if it holds one, stays held, not wiped, until "
        "`talprov baremetal release NAME` frees it (`talprov baremetal list` names it)")

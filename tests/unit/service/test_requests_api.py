"""Machine requests through HTTP only: lifecycle, idempotency, conflicts, validation."""

from __future__ import annotations

from tests.helpers import Home
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import READ, WRITE, Api, open_api, request_body

COUNT = 20


def test_twenty_requests_provisioned_then_deleted_through_http(api: Api) -> None:
    ids = [f"web-{n:02d}" for n in range(COUNT)]
    for request_id in ids:
        response = api.request("POST", "/v1/machine-requests", json=request_body(request_id),
                               headers=WRITE)
        assert response.status_code == 201, response.text
        assert response.json()["stage"] in ("pending", "provisioning")

    api.wait_for(lambda: set(api.stages().values()) == {"provisioned"}
                 and len(api.stages()) == COUNT)
    one = api.request("GET", "/v1/machine-requests/web-07", headers=READ).json()
    assert one["infra_id"].startswith("fm-")
    assert one["machine_uuid"]
    assert one["addresses"] == ["192.0.2.10"]
    cloud = Cloud(api.home.cloud_path())
    assert sorted(m["request_id"] for m in cloud.machines()) == ids

    for request_id in ids:
        response = api.request("DELETE", f"/v1/machine-requests/{request_id}", headers=WRITE)
        assert response.status_code == 202
        assert response.json()["stage"] in ("deprovisioning", "gone")

    api.wait_for(lambda: api.stages() == {})
    for request_id in ids:
        assert api.request("GET", f"/v1/machine-requests/{request_id}",
                           headers=WRITE).status_code == 404
        assert api.request("DELETE", f"/v1/machine-requests/{request_id}",
                           headers=WRITE).status_code == 404
    assert cloud.machines() == []


def test_same_body_again_is_200_with_the_same_resource(idle_api: Api) -> None:
    body = request_body("db-1", extensions=["siderolabs/iscsi-tools"],
                        provider_data={"size": "large"})
    first = idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    again = idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()


def test_different_body_under_an_existing_id_is_409(idle_api: Api) -> None:
    idle_api.request("POST", "/v1/machine-requests", json=request_body("db-2"), headers=WRITE)
    changed = request_body("db-2", provider_data={"size": "medium"})
    response = idle_api.request("POST", "/v1/machine-requests", json=changed, headers=WRITE)
    assert response.status_code == 409
    assert "db-2" in response.json()["detail"]


def test_a_create_while_the_request_is_being_deleted_is_409(idle_api: Api) -> None:
    body = request_body("db-3")
    idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    deleted = idle_api.request("DELETE", "/v1/machine-requests/db-3", headers=WRITE)
    assert deleted.status_code == 202
    again = idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert again.status_code == 409, again.text
    assert "db-3 is being deleted" in again.json()["detail"]


def test_bad_provider_data_is_422_naming_the_field(idle_api: Api) -> None:
    typo = request_body("db-3", provider_data={"sise": "large"})
    response = idle_api.request("POST", "/v1/machine-requests", json=typo, headers=WRITE)
    assert response.status_code == 422
    assert {"loc": ["body", "provider_data", "sise"], "msg": "unknown field",
            "type": "extra_forbidden"} in response.json()["detail"]

    wrong = request_body("db-3", provider_data={"size": "huge"})
    detail = idle_api.request("POST", "/v1/machine-requests", json=wrong,
                              headers=WRITE).json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "provider_data", "size"]]
    assert "input" not in detail[0]
    assert idle_api.request("GET", "/v1/machine-requests/db-3", headers=WRITE).status_code == 404


def test_unknown_provider_and_bad_fields_are_422_naming_them(idle_api: Api) -> None:
    cases = {
        ("body", "provider"): request_body("db-4", provider="nope"),
        ("body", "talos_version"): request_body("db-4", talos_version="1.11"),
        ("body", "id"): request_body("Not_A_DNS_Label"),
        ("body", "colour"): request_body("db-4", colour="blue"),
        ("body", "config"): request_body("db-4", config="version: v1alpha1\nmachine: {foo: 1}\n"),
    }
    for loc, body in cases.items():
        response = idle_api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
        assert response.status_code == 422, (loc, response.text)
        assert list(loc) == response.json()["detail"][0]["loc"][: len(loc)], response.text


def test_listing_filters_by_provider_label_and_stage(idle_api: Api) -> None:
    for name, role in (("a-1", "worker"), ("a-2", "controlplane"), ("a-3", "worker")):
        idle_api.request("POST", "/v1/machine-requests",
                         json=request_body(name, labels={"role": role}), headers=WRITE)
    listed = idle_api.request("GET", "/v1/machine-requests",
                              params={"label": "role=worker", "provider": "fake"}, headers=READ)
    assert [i["id"] for i in listed.json()["items"]] == ["a-1", "a-3"]
    pending = idle_api.request("GET", "/v1/machine-requests", params={"stage": "pending"},
                               headers=READ).json()["items"]
    assert len(pending) == 3
    bad = idle_api.request("GET", "/v1/machine-requests", params={"label": "role"},
                           headers=READ)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "label", 0]


def test_events_show_progress(api: Api) -> None:
    api.request("POST", "/v1/machine-requests", json=request_body("ev-1"), headers=WRITE)
    api.wait_for(lambda: api.stages().get("ev-1") == "provisioned")
    events = api.request("GET", "/v1/machine-requests/ev-1/events", headers=READ).json()
    messages = [e["message"] for e in events]
    assert messages[0] == "request created"
    assert any(m.startswith("provisioned") for m in messages)


def test_postgres_store_gets_no_nul_characters(home: Home, postgres_url: str) -> None:
    """PostgreSQL text cannot hold NUL: such input must be a 4xx, never a 500."""
    home.write_config(store=postgres_url)
    for api in open_api(home, workers=False):
        nul = "\x00"
        attempts = [
            ("GET", "/v1/machine-requests/a%00b", {}),
            ("GET", "/v1/machine-requests", {"params": {"provider": f"fa{nul}ke"}}),
            ("GET", "/v1/machine-requests", {"params": {"label": f"role=w{nul}"}}),
            ("GET", "/v1/machine-request-sets/s%00", {}),
            ("POST", "/v1/machine-requests", {"json": request_body("n-1", labels={"k": nul})}),
            ("POST", "/v1/machine-requests",
             {"json": request_body("n-1", join={"api_url": f"https://x/{nul}"})}),
            ("POST", "/v1/machine-requests",
             {"json": request_body("n-1", config=f"version: v1alpha1{nul}\n")}),
            ("POST", "/v1/machine-requests/n-1/forget", {"json": {"reason": nul}}),
        ]
        for method, url, kwargs in attempts:
            response = api.request(method, url, headers=WRITE, **kwargs)
            assert 400 <= response.status_code < 500, (url, kwargs, response.text)
        ok = api.request("POST", "/v1/machine-requests", headers=WRITE,
                         json=request_body("n-1", extensions=[f"ext{nul}"],
                                           provider_data={"zone": f"z{nul}"}))
        assert ok.status_code == 201, ok.text
        assert api.request("GET", "/v1/machine-requests/n-1", headers=WRITE).status_code == 200

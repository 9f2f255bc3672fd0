"""Through HTTP only: 20 machines from the AWS driver on moto, then none."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest

from tests.emulators.moto import REGION, MotoServer
from tests.helpers import SEEN_OUTPUT, WORKER_CONFIG, Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until

COUNT = 20


def live_instances(server: MotoServer) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=server.url)
    instances: list[dict[str, Any]] = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for raw in reservation["Instances"]:
            if raw["State"]["Name"] != "terminated":
                instances.append(dict(raw))
    return instances


@pytest.mark.slow
def test_twenty_aws_machines_through_http(home: Home, moto_server: MotoServer) -> None:
    home.providers.clear()
    home.providers["aws-dev"] = {
        "type": "aws", "region": REGION, "endpoint_url": moto_server.url,
        "max_attempts": 1, "poll_interval": 0.2, "concurrency": 8,
    }
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    server = ServeProcess(home.env(), home.root)
    ids = [f"aws-{n:02d}" for n in range(COUNT)]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            providers = client.get("/v1/providers", headers=WRITE).json()["items"]
            assert [(p["name"], p["type"]) for p in providers] == [("aws-dev", "aws")]
            assert "instance_type" in providers[0]["provider_data_schema"]["properties"]
            for request_id in ids:
                body = request_body(request_id, provider="aws-dev", config=WORKER_CONFIG,
                                    provider_data={"instance_type": "t3.small"})
                response = client.post("/v1/machine-requests", json=body, headers=WRITE)
                assert response.status_code == 201, response.text

            def stages() -> dict[str, str]:
                items = client.get("/v1/machine-requests", headers=WRITE).json()["items"]
                SEEN_OUTPUT.append(str(items))
                return {i["id"]: i["stage"] for i in items}

            wait_until(lambda: stages() == dict.fromkeys(ids, "provisioned"), 180,
                       "20 provisioned AWS machines")
            views = [client.get(f"/v1/machine-requests/{i}", headers=WRITE).json() for i in ids]
            infra_ids = {v["infra_id"] for v in views}
            assert all(i.startswith("i-") for i in infra_ids)
            assert len(infra_ids) == COUNT
            assert {raw["InstanceId"] for raw in live_instances(moto_server)} == infra_ids

            for request_id in ids:
                deleted = client.delete(f"/v1/machine-requests/{request_id}", headers=WRITE)
                assert deleted.status_code == 202
            wait_until(lambda: stages() == {}, 180, "every request gone")
            for request_id in ids:
                response = client.get(f"/v1/machine-requests/{request_id}", headers=WRITE)
                assert response.status_code == 404
    finally:
        assert server.terminate() == 0, server.output()
    assert live_instances(moto_server) == []


@pytest.mark.slow
def test_sixteen_way_concurrency_keeps_every_connection(home: Home,
                                                        moto_server: MotoServer) -> None:
    """At ``concurrency: 16`` the worker's threads share one EC2 client: a connection
    pool smaller than that makes urllib3 throw connections away (and warn about
    each: "Connection pool is full, discarding connection")."""
    home.providers.clear()
    home.providers["aws-dev"] = {
        "type": "aws", "region": REGION, "endpoint_url": moto_server.url,
        "max_attempts": 1, "poll_interval": 0.2, "concurrency": 16, "name_machines": True,
    }
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    server = ServeProcess(home.env(), home.root)
    ids = [f"pool-{n:02d}" for n in range(32)]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for request_id in ids:
                body = request_body(request_id, provider="aws-dev", config=WORKER_CONFIG,
                                    provider_data={"instance_type": "t3.small"})
                assert client.post("/v1/machine-requests", json=body,
                                   headers=WRITE).status_code == 201
            wait_until(lambda: {i["stage"] for i in client.get(
                "/v1/machine-requests", headers=WRITE).json()["items"]} == {"provisioned"},
                180, "32 provisioned AWS machines")
            for request_id in ids:
                assert client.delete(f"/v1/machine-requests/{request_id}",
                                     headers=WRITE).status_code == 202
            wait_until(lambda: client.get("/v1/machine-requests",
                                          headers=WRITE).json()["items"] == [], 180, "gone")
    finally:
        assert server.terminate() == 0, server.output()
    assert "Connection pool is full" not in server.output()

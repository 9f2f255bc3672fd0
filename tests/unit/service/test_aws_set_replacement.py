"""QA's repro, through `talprov serve` and moto: a request set's member whose EC2
instance is terminated outside talprov, or whose subnet does not exist."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest

from tests.emulators.moto import REGION, MotoServer
from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.service.test_aws_e2e import live_instances


def set_body(name: str, **provider_data: Any) -> dict[str, Any]:
    body = request_body("unused", provider="aws-dev", config=WORKER_CONFIG,
                        provider_data={"instance_type": "t3.small", **provider_data})
    del body["id"]
    return {**body, "name": name, "machine_count": 1}


def serve(home: Home, moto_server: MotoServer) -> ServeProcess:
    home.providers.clear()
    home.providers["aws-dev"] = {
        "type": "aws", "region": REGION, "endpoint_url": moto_server.url,
        "max_attempts": 1, "poll_interval": 0.2,
    }
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    return ServeProcess(home.env(), home.root)


@pytest.mark.slow
def test_a_terminated_members_instance_is_replaced(home: Home, moto_server: MotoServer) -> None:
    server = serve(home, moto_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            created = client.post("/v1/machine-request-sets", json=set_body("cset"),
                                  headers=WRITE)
            assert created.status_code == 201, created.text

            def members() -> dict[str, str]:
                view = client.get("/v1/machine-request-sets/cset", headers=WRITE).json()
                return {m["id"]: m["stage"] for m in view["members"]}

            wait_until(lambda: members() == {"cset-0": "provisioned"}, 120, "cset-0 provisioned")
            first = client.get("/v1/machine-requests/cset-0", headers=WRITE).json()["infra_id"]
            ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server.url)
            ec2.terminate_instances(InstanceIds=[first])
            wait_until(lambda: list(members().values()) == ["provisioned"]
                       and "cset-0" not in members(), 120, "a provisioned replacement")
            view = client.get("/v1/machine-request-sets/cset", headers=WRITE).json()
            assert view["last_failure"]["member"] == "cset-0"
            assert first in view["last_failure"]["error"]
            live = {raw["InstanceId"] for raw in live_instances(moto_server)}
            assert first not in live
            assert len(live) == 1
            client.delete("/v1/machine-request-sets/cset", headers=WRITE)
            wait_until(lambda: client.get("/v1/machine-request-sets/cset",
                                          headers=WRITE).status_code == 404, 120, "set gone")
    finally:
        assert server.terminate() == 0, server.output()
    assert live_instances(moto_server) == []


@pytest.mark.slow
def test_a_bad_subnet_is_replaced_once_then_backs_off(home: Home,
                                                      moto_server: MotoServer) -> None:
    server = serve(home, moto_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = set_body("bad", subnets=["subnet-0bad"])
            assert client.post("/v1/machine-request-sets", json=body,
                               headers=WRITE).status_code == 201

            def failure() -> dict[str, Any] | None:
                view = client.get("/v1/machine-request-sets/bad", headers=WRITE).json()
                found: dict[str, Any] | None = view["last_failure"]
                return found

            wait_until(lambda: failure() is not None, 120, "the first replacement")
            shown = failure()
            assert shown is not None
            assert shown["replacements"] == 1
            assert "subnet-0bad" in shown["error"]
            assert shown["next_replacement_at"].endswith("Z")
            # The replacement fails the same way; the next waits out the backoff.
            wait_until(lambda: "failed" in {
                m["stage"] for m in client.get("/v1/machine-request-sets/bad",
                                               headers=WRITE).json()["members"]},
                120, "the replacement failed too")
            again = failure()
            assert again is not None
            assert again["replacements"] == 1
    finally:
        assert server.terminate() == 0, server.output()
    assert live_instances(moto_server) == []

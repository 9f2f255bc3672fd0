"""What can be known at create time fails at create time (issue 14, item 4).

Before: an AWS request with extensions and no image_bucket was recorded, then
failed in the worker at the import step; the same through a cluster spec and the
API.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.test_cli import assert_usage_error


def closed_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def aws_home(home: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    home.providers["ec2"] = {"type": "aws", "region": "eu-west-1",
                             "endpoint_url": closed_endpoint()}
    home.write_config()
    return home


def test_machine_create_refuses_extensions_without_image_bucket(aws_home: Home) -> None:
    request = aws_home.write_request("ext-1", provider="ec2",
                                     extensions=["siderolabs/iscsi-tools"])
    result = aws_home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: extensions", "image_bucket")
    listed = aws_home.invoke("machine", "list", "-o", "json")
    assert "ext-1" not in listed.output  # nothing was recorded
    plain = aws_home.write_request("plain-1", provider="ec2")
    assert aws_home.invoke("machine", "create", "-f", str(plain)).exit_code == 0


def test_plan_refuses_a_class_with_kernel_args_without_image_bucket(aws_home: Home) -> None:
    root = aws_home.root
    (root / "worker.yaml").write_text(WORKER_CONFIG)
    docs = [
        {"kind": "Cluster", "name": "c1", "talos": {"version": "v1.11.5"}},
        {"kind": "MachineClass", "name": "small", "provider": "ec2",
         "kernel_args": ["console=ttyS0"]},
        {"kind": "ControlPlane", "machineClass": {"name": "small", "size": 1},
         "config": {"file": "worker.yaml"}},
    ]
    spec = root / "cluster.yaml"
    spec.write_text(yaml.safe_dump_all(docs))
    for command in ("plan", "apply"):
        result = aws_home.invoke(command, "-f", str(spec))
        # Blamed on the class's document, in the form of every spec error.
        assert_usage_error(result.exit_code, result.output,
                           f'{spec}: document 2 (MachineClass "small"): kernel_args: ',
                           "image_bucket")


@pytest.fixture
def aws_api(aws_home: Home) -> Iterator[Api]:
    yield from open_api(aws_home)


def assert_refused_with_422(api: Api, body: dict[str, Any], field: str, words: str) -> None:
    """POSTing ``body`` answers 422 at ``body.<field>`` saying ``words``; nothing recorded."""
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", *field.split(".")]
    assert words in detail["msg"]
    assert api.request("GET", f"/v1/machine-requests/{body['id']}",
                       headers=WRITE).status_code == 404


def test_api_refuses_extensions_without_image_bucket_with_422(aws_api: Api) -> None:
    body = request_body("ext-api", provider="ec2", extensions=["siderolabs/iscsi-tools"])
    assert_refused_with_422(aws_api, body, "extensions", "image_bucket")


@pytest.mark.parametrize("block", [
    {"type": "aws", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
    {"type": "proxmox", "url": "https://127.0.0.1:9", "token_id": "root@pam!t",
     "token_secret": "s" * 20},
    {"type": "vmware", "url": "https://127.0.0.1:9/sdk", "username": "u", "password": "p" * 12},
    {"type": "openstack", "auth": {"auth_url": "https://127.0.0.1:9/v3", "username": "u",
                                   "password": "p" * 12, "project_name": "p"}},
])
def test_every_user_data_driver_checks_the_config_renders(
    block: dict[str, object], tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from talprov.providers.errors import InvalidRequest
    from talprov.providers.protocol import ChecksRequests, Runtime
    from talprov.providers.types import JoinSpec, MachineRequest
    from talprov.registry import build_provider

    runtime = Runtime(installation="t", cache_dir=tmp_path)
    provider = build_provider("x", dict(block), runtime, where="providers.x")
    assert isinstance(provider, ChecksRequests)
    good = MachineRequest(id="r", provider="x", talos_version="v1.11.5",
                          machine_config=SecretStr(WORKER_CONFIG))
    provider.check_request(good)  # no network: port 9 is never asked
    # Joining Omni with documents appends to the config, which must then parse.
    join = JoinSpec(api_url=SecretStr("https://omni.example:8090/?jointoken=t"),
                    mode="documents")
    bad = good.model_copy(update={"machine_config": SecretStr("version: v1alpha1\n  : ["),
                                  "join": join})
    with pytest.raises(InvalidRequest) as caught:
        provider.check_request(bad)
    assert caught.value.field == "machine_config"

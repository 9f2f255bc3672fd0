"""What the instance and image settings cannot serve (arch, secure boot, Talos
version) is refused before a request is recorded, on every platform, with no
cloud call (issue 14, item 4: "arch/platform support").

Before: an arm64 request on Proxmox (whose VMs are x86_64 q35/pc machines), an
arm64 request with an x86 EC2 instance type, a secure-boot request on AWS,
OpenStack, vSphere or bare metal (PXE), and a vSphere arm64 request before
Talos v1.11.1 (no vmware-arm64.ova) were all recorded and failed in the worker.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from talprov.aws.archs import instance_type_arch
from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import ChecksRequests, Runtime
from talprov.providers.types import Arch, MachineRequest
from talprov.registry import build_provider
from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import Api, open_api, request_body
from tests.unit.test_cli import assert_usage_error
from tests.unit.test_preflight import assert_refused_with_422, closed_endpoint

# Port 9 of 127.0.0.1 is never asked: a pre-flight check makes no call.
BLOCKS: dict[str, dict[str, Any]] = {
    "aws": {"type": "aws", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
    "proxmox": {"type": "proxmox", "url": "https://127.0.0.1:9", "token_id": "root@pam!t",
                "token_secret": "s" * 20},
    "vmware": {"type": "vmware", "url": "https://127.0.0.1:9/sdk", "username": "u",
               "password": "p" * 12},
    "openstack": {"type": "openstack", "auth": {
        "auth_url": "https://127.0.0.1:9/v3", "username": "u", "password": "p" * 12,
        "project_name": "p"}},
    "baremetal": {"type": "baremetal", "inventory": "INVENTORY",
                  "boot_url": "http://127.0.0.1:9"},
}


def _check(platform: str, tmp_path: Path, **fields: Any) -> None:
    block = dict(BLOCKS[platform])
    if "inventory" in block:
        block["inventory"] = str(tmp_path / "inventory.sqlite")
    provider = build_provider("x", block, Runtime(installation="t", cache_dir=tmp_path),
                              where="providers.x")
    assert isinstance(provider, ChecksRequests)
    body: dict[str, Any] = {"id": "r", "provider": "x", "talos_version": "v1.13.9",
                            "machine_config": SecretStr(WORKER_CONFIG), **fields}
    provider.check_request(MachineRequest.model_validate(body))


@pytest.mark.parametrize(("platform", "fields", "field"), [
    ("aws", {"arch": "arm64", "provider_data": {"instance_type": "t3.small"}},
     "provider_data.instance_type"),
    ("aws", {"provider_data": {"instance_type": "m7g.large"}}, "provider_data.instance_type"),
    ("aws", {"secure_boot": True}, "secure_boot"),
    ("proxmox", {"arch": "arm64"}, "arch"),
    ("vmware", {"arch": "arm64", "talos_version": "v1.11.0"}, "arch"),
    ("vmware", {"secure_boot": True}, "secure_boot"),
    ("openstack", {"secure_boot": True}, "secure_boot"),
    ("baremetal", {"secure_boot": True}, "secure_boot"),
])
def test_what_a_platform_cannot_serve_is_refused(
    platform: str, fields: dict[str, Any], field: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _check(platform, tmp_path, **fields)
    assert caught.value.field == field


@pytest.mark.parametrize(("platform", "fields"), [
    ("aws", {"arch": "arm64", "provider_data": {"instance_type": "t4g.small"}}),
    ("aws", {"arch": "arm64"}),  # talprov picks t4g.small
    ("proxmox", {"secure_boot": True}),  # nocloud has secure boot images
    ("vmware", {"arch": "arm64", "talos_version": "v1.11.1"}),
    ("vmware", {"arch": "arm64", "talos_version": "v1.11.0",
                "provider_data": {"template": "talos-arm"}}),  # the user's own template
    ("openstack", {"arch": "arm64"}),
    ("openstack", {"secure_boot": True, "provider_data": {"image": "my-talos"}}),
    ("baremetal", {"arch": "arm64"}),
])
def test_what_a_platform_can_serve_passes(
    platform: str, fields: dict[str, Any], tmp_path: Path
) -> None:
    _check(platform, tmp_path, **fields)


def test_instance_type_architectures_agree_with_ec2() -> None:
    """The naming rule against every type EC2 describes (moto's DescribeInstanceTypes data)."""
    import moto

    data = json.loads(gzip.decompress(
        (Path(moto.__file__).parent / "ec2/resources/instance_types.json.gz").read_bytes()))
    assert len(data) > 1000
    known = 0
    for name, info in data.items():
        archs = info["ProcessorInfo"]["SupportedArchitectures"]
        found = instance_type_arch(name)
        if found is None:
            assert name.startswith(("mac", "u-")), name
            continue
        known += 1
        assert (found is Arch.ARM64) == ("arm64" in archs), (name, archs)
    assert known > 1300


def test_machine_create_refuses_before_recording(home: Home,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    home.providers["ec2"] = {"type": "aws", "region": "eu-west-1",
                             "endpoint_url": closed_endpoint()}
    home.write_config()
    request = home.write_request("arm-1", provider="ec2", arch="arm64",
                                 provider_data={"instance_type": "m6i.large"})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, "provider_data.instance_type",
                       "m6i.large is an amd64 instance type", "arm64")
    assert "arm-1" not in home.invoke("machine", "list", "-o", "json").output


@pytest.fixture
def pve_api(home: Home) -> Iterator[Api]:
    home.providers["pve"] = dict(BLOCKS["proxmox"])
    home.write_config()
    yield from open_api(home)


def test_the_api_refuses_with_422_naming_the_field(pve_api: Api) -> None:
    body = request_body("arm-api", provider="pve", arch="arm64")
    assert_refused_with_422(pve_api, body, "arch", "x86_64")

"""Every driver's translated errors name the endpoint (scheme://host:port, nothing
more) of a failed connection, refused credentials or HTTP error (issue 14).

Each platform's real client talks to a closed loopback port (or, for an AWS
error answer, to moto); the message must carry the endpoint and no credentials,
path or query. Before, proxmox, vmware, openstack and aws said "unreachable
(ConnectionError)" and the like without saying where.
"""

from __future__ import annotations

import http.client
import re
import ssl
from pathlib import Path

import pytest
from sushy import exceptions as sushy_errors

from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.errors import aws_errors
from talprov.baremetal.errors import ipmi_error
from talprov.baremetal.power.ipmi import IpmiPower
from talprov.baremetal.power.redfish import RedfishPower
from talprov.providers import Owner, Runtime
from talprov.providers.errors import (
    AuthError,
    ProviderError,
    connection_failure,
    endpoint_origin,
)
from talprov.pytest_plugin.fixtures import use_fake_aws_credentials
from talprov.registry import build_provider
from tests.emulators.moto import MotoServer, moto_process, moto_server
from tests.unit.test_missing_extras import closed_url, instance_for

__all__ = ["moto_process", "moto_server"]  # fixtures


@pytest.mark.parametrize("platform", ["aws", "proxmox", "vmware", "openstack"])
def test_an_unreachable_endpoint_is_named(platform: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws_credentials(monkeypatch)
    block = instance_for(platform, tmp_path)
    assert block is not None
    if platform == "openstack":
        block["auth"].update(username="u", password="p" * 12, project_name="p",
                             user_domain_name="Default", project_domain_name="Default")
    url = block.get("url") or block.get("endpoint_url") or block["auth"]["auth_url"]
    runtime = Runtime(installation="t", cache_dir=tmp_path / "cache",
                      sleep=lambda _seconds: None)
    provider = build_provider(platform, {**block, "concurrency": 1}, runtime, where="p")
    with pytest.raises(ProviderError) as failed:
        provider.list_machines(Owner("t", platform))
    assert endpoint_origin(url) in str(failed.value), failed.value
    # In words, not the SDK's class name ("ConnectionError", "ConnectFailure").
    assert "connection refused" in str(failed.value), failed.value
    assert not re.search(r"\b[A-Z]\w+(Error|Failure)\b", str(failed.value)), failed.value


def test_an_aws_error_answer_names_the_endpoint(moto_server: MotoServer) -> None:
    ec2 = AwsClients(AwsConfig(region="eu-west-1", endpoint_url=moto_server.url)).ec2
    with pytest.raises(ProviderError) as failed, aws_errors("DescribeInstances"):
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert f"DescribeInstances at {endpoint_origin(moto_server.url)}: " in str(failed.value)


def test_a_redfish_bmc_is_named_without_credentials() -> None:
    url = closed_url()
    power = RedfishPower(url.replace("https://", "https://admin:pw@") + "/redfish?token=x",
                         "admin", "pw", attempts=1, sleep=lambda _seconds: None)
    with pytest.raises(ProviderError) as failed:
        power.power_state()
    message = str(failed.value)
    assert f" at {url}: " in message, message
    assert "pw" not in message
    assert "token" not in message


def test_an_ipmi_bmc_is_named() -> None:
    power = IpmiPower("192.0.2.7", "admin", "pw", port=6230)
    error = ipmi_error(Exception("Unauthorized name"), "power on",
                       endpoint=power.endpoint)
    assert isinstance(error, AuthError)
    assert str(error).startswith("power on at ipmi://192.0.2.7:6230: ")
    refused = sushy_errors.AccessError("GET", "https://192.0.2.8/redfish/v1", _Answer(401))
    assert "at https://192.0.2.8:443:" in str(_redfish(refused))


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.url = "https://192.0.2.8/redfish/v1"
        self.headers: dict[str, str] = {}

    def json(self) -> dict[str, object]:
        return {}


def _redfish(exc: BaseException) -> ProviderError:
    from talprov.baremetal.errors import redfish_error

    return redfish_error(exc, "power on", endpoint="https://user:pw@192.0.2.8/redfish/v1")


@pytest.mark.parametrize(("url", "origin"), [
    ("https://user:secret@pve.lab:8006/api2/json?token=x#f", "https://pve.lab:8006"),
    ("https://vc.example/sdk", "https://vc.example:443"),
    ("http://[fd00::1]/v3", "http://[fd00::1]:80"),
    ("ipmi://10.0.0.5:623", "ipmi://10.0.0.5:623"),
    ("bmc.lab?password=x", "bmc.lab"),
])
def test_endpoint_origin_keeps_scheme_host_and_port_only(url: str, origin: str) -> None:
    assert endpoint_origin(url) == origin


@pytest.mark.parametrize(("exc", "words"), [
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (TimeoutError("timed out"), "timed out"),
    (OSError("[Errno -2] Name or service not known"), "host name not resolved"),
    (RuntimeError("something else"), "connection failed"),
    # A kept-alive connection the peer closed (idle, or the server dropped the
    # request): before, these all read "connection failed" or, for a TLS EOF,
    # "TLS handshake failed", which hid which one a flaky run had met.
    (http.client.RemoteDisconnected("Remote end closed connection without response"),
     "connection closed without an answer"),
    (BrokenPipeError(32, "Broken pipe"), "connection closed while sending"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"),
     "connection closed by the peer"),
])
def test_connection_failures_are_said_in_words(exc: BaseException, words: str) -> None:
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = exc
    assert connection_failure(wrapper) == words

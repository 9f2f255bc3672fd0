"""A ``ca_file`` that goes (deleted, emptied) after the config was read reaches no
user as a traceback: every driver turns the OS or SSL error its TLS library raises
into ``InstanceUnavailable`` naming the file, and any other OS error below an SDK
into a ``ProviderError``.

QA before: OpenStack's ``list_machines`` raised ``OSError: Could not find a suitable
TLS CA certificate bundle`` out of the listing (``machine create --wait`` printed a
traceback, ``providers --health`` said only "unhealthy: OSError"); vSphere raised
FileNotFoundError out of the provider's constructor; Proxmox said "unexpected
OSError" without naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.providers.errors import InstanceUnavailable, Transient
from tests.unit.autoscaler.certs import Authority

CLOSED = "https://127.0.0.1:9"


@pytest.fixture
def gone_ca_file(tmp_path: Path) -> str:
    """A CA file the config check would have accepted, deleted since."""
    pem = tmp_path / "ca.pem"
    pem.write_bytes(Authority("gone").pem.cert)
    pem.unlink()
    return str(pem)


def assert_names_the_file(error: BaseException, path: str, *, endpoint: bool = True) -> None:
    assert isinstance(error, InstanceUnavailable), repr(error)
    assert f"ca_file {path}: no such file" in str(error)
    # OpenStack's service endpoints come from the catalog, which was never read.
    assert "127.0.0.1:9" in str(error) or not endpoint


def test_openstack_names_a_ca_file_gone_since_the_config_was_read(gone_ca_file: str) -> None:
    from talprov.openstack.client import OpenStackClient
    from talprov.openstack.config import OpenStackConfig

    config = OpenStackConfig.model_validate({
        "ca_file": gone_ca_file, "auth": {"auth_url": CLOSED + "/v3", "username": "u",
                                          "password": "p" * 12, "project_name": "p"}})
    client = OpenStackClient(config, sleep=lambda _: None)
    with pytest.raises(InstanceUnavailable) as raised:
        client.list("list servers", client.compute.servers)
    assert_names_the_file(raised.value, gone_ca_file, endpoint=False)


def test_openstack_translates_an_os_error_below_the_sdk() -> None:
    from talprov.openstack.client import OpenStackClient
    from talprov.openstack.config import OpenStackConfig

    config = OpenStackConfig.model_validate({"cloud": "prod"})
    client = OpenStackClient(config, sleep=lambda _: None)

    def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(Transient, match="list servers: connection refused"):
        client.write("list servers", refused)


def test_proxmox_names_a_ca_file_gone_since_the_config_was_read(gone_ca_file: str) -> None:
    from talprov.proxmox.client import PveClient
    from talprov.proxmox.config import ProxmoxConfig

    config = ProxmoxConfig.model_validate({"url": CLOSED, "token_id": "root@pam!t",
                                           "token_secret": "s" * 20,
                                           "ca_file": gone_ca_file})
    with pytest.raises(InstanceUnavailable) as raised:
        PveClient(config).get("read the version", "version")
    assert_names_the_file(raised.value, gone_ca_file)


def test_vsphere_names_a_ca_file_gone_since_the_config_was_read(gone_ca_file: str) -> None:
    from talprov.vmware.client import ssl_context
    from talprov.vmware.config import VSphereConfig

    config = VSphereConfig.model_validate({"url": CLOSED, "username": "u",
                                           "password": "p" * 12, "ca_file": gone_ca_file})
    with pytest.raises(InstanceUnavailable) as raised:
        ssl_context(config)
    assert_names_the_file(raised.value, gone_ca_file)


def test_an_emptied_ca_file_is_named_too(tmp_path: Path) -> None:
    from talprov.vmware.client import ssl_context
    from talprov.vmware.config import VSphereConfig

    empty = tmp_path / "ca.pem"
    empty.write_text("")
    config = VSphereConfig.model_validate({"url": CLOSED, "username": "u",
                                           "password": "p" * 12, "ca_file": str(empty)})
    with pytest.raises(InstanceUnavailable, match="holds no PEM certificate"):
        ssl_context(config)

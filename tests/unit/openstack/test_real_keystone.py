"""Identity is the real Keystone (PyPI ``keystone``); Nova/Glance/Neutron are the fake.

``TALPROV_KEYSTONE_PYTHON`` names a Python with ``keystone`` installed (Keystone's
dependencies stay out of talprov's virtualenv); ``scripts/test.sh`` builds one.
Without it these tests fail rather than skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from talprov.openstack.config import OpenStackAuth, OpenStackConfig
from talprov.openstack.provider import OpenStackProvider
from talprov.providers.errors import AuthError, InstanceUnavailable
from tests.emulators.factory import FakeImageFactory
from tests.emulators.openstack import FakeOpenStack
from tests.emulators.openstack.real_keystone import ENV_PYTHON, RealKeystone, keystone_python
from tests.unit.openstack.harness import Harness

pytestmark = pytest.mark.slow


@dataclass
class KeystoneCloud:
    keystone: RealKeystone
    fake: FakeOpenStack
    auth: dict[str, str]


@pytest.fixture(scope="module")
def keystone_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneCloud]:
    python = keystone_python()
    if python is None:
        pytest.fail(f"{ENV_PYTHON} does not name a Python with keystone installed "
                    "(scripts/test.sh builds .venv-keystone)")
    keystone = RealKeystone(python, tmp_path_factory.mktemp("keystone")).start()
    fake = FakeOpenStack().start()
    try:
        yield KeystoneCloud(keystone, fake, keystone.connect(fake))
    finally:
        fake.stop()
        keystone.stop()


def _harness(cloud: KeystoneCloud, factory: FakeImageFactory, tmp: Path,
             auth: OpenStackAuth) -> Harness:
    harness = Harness(cloud.fake, factory, tmp)
    harness.config = OpenStackConfig(auth=auth, region="RegionOne", poll_interval=1.0)
    harness.provider = OpenStackProvider("os-test", harness.config, harness.runtime)
    return harness


def test_provision_and_delete_with_a_real_keystone_token(
        keystone_cloud: KeystoneCloud, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    harness = _harness(keystone_cloud, shared_image_factory, tmp_path,
                       OpenStackAuth(**keystone_cloud.auth))
    ctx = harness.provision(harness.request("ks-1"))
    servers = keystone_cloud.fake.servers()
    assert [s.status for s in servers] == ["ACTIVE"]
    # The server belongs to the user Keystone issued the token for.
    assert servers[0].user_id != ""
    harness.deprovision(ctx)
    assert keystone_cloud.fake.servers() == []
    assert keystone_cloud.fake.ports() == []


def test_application_credential_from_real_keystone(
        keystone_cloud: KeystoneCloud, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    cred_id, secret = keystone_cloud.keystone.application_credential(keystone_cloud.auth)
    auth = OpenStackAuth(auth_url=keystone_cloud.keystone.auth_url,
                         application_credential_id=cred_id,
                         application_credential_secret=secret)
    harness = _harness(keystone_cloud, shared_image_factory, tmp_path, auth)
    assert harness.provider.health().ok
    assert harness.provider.list_machines(harness.owner) == []


def test_wrong_password_is_rejected_by_keystone(
        keystone_cloud: KeystoneCloud, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    auth = OpenStackAuth(**{**keystone_cloud.auth, "password": "wrong-password"})
    harness = _harness(keystone_cloud, shared_image_factory, tmp_path, auth)
    with pytest.raises(AuthError):
        harness.provider.list_machines(harness.owner)


def test_a_region_keystones_catalog_lacks_names_the_region_setting(
        keystone_cloud: KeystoneCloud, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    harness = _harness(keystone_cloud, shared_image_factory, tmp_path,
                       OpenStackAuth(**keystone_cloud.auth))
    config = harness.config.model_copy(update={"region": "Nowhere"})
    provider = OpenStackProvider("os-test", config, harness.runtime)
    health = provider.health()
    assert not health.ok
    assert "providers.os-test.region" in health.message
    assert "RegionOne" in health.message
    with pytest.raises(InstanceUnavailable, match=r"providers\.os-test\.region"):
        provider.list_machines(harness.owner)

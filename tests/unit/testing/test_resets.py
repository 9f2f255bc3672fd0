"""reset() of the in-process emulators the pytest plugin keeps for a whole session."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from talprov.testing.factory import EMPTY_SCHEMATIC_ID, FakeImageFactory
from talprov.testing.openstack import FakeOpenStack
from talprov.testing.openstack.state import DEFAULT_QUOTAS


def test_openstack_reset_forgets_what_a_test_left_and_keeps_the_seed() -> None:
    with FakeOpenStack() as cloud:
        seeded_networks = {n: cloud.network_id(n) for n in ("private", "public")}
        cloud.add_network("left-over", "10.9.0.0/24")
        cloud.add_image("left-over-image")
        cloud.fail_next("GET", "/compute/v2.1/servers", 503, count=5)
        cloud.set_quota("instances", 0)
        cloud.reset()
        assert cloud.images() == []
        assert cloud.state.faults.routes == []
        assert cloud.state.quotas == DEFAULT_QUOTAS
        with pytest.raises(StopIteration):
            cloud.network_id("left-over")
        # Seeded again (new ids), and the user of auth() can still sign in.
        assert set(seeded_networks) <= {n.name for n in cloud.state.networks.values()}
        assert cloud.auth()["username"] == cloud.username


def test_factory_reset_forgets_hits_faults_and_schematics() -> None:
    with FakeImageFactory() as factory:
        path = f"/image/{EMPTY_SCHEMATIC_ID}/v1.11.5/kernel-amd64"
        factory.fail_next(path, 503, times=3)
        factory.id_override = "f" * 64
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(factory.url + path, timeout=10)
        assert factory.hits[path] == 1
        factory.reset()
        assert not factory.hits
        assert factory.id_override is None
        with urllib.request.urlopen(factory.url + path, timeout=10) as answer:
            assert answer.status == 200
        assert factory.hits[path] == 1

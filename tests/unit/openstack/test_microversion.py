"""The compute microversion talprov asks for: chosen through public openstacksdk and
keystoneauth calls from Nova's version document, or the one the configuration pins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openstack
import pytest

from talprov.openstack.config import OpenStackConfig
from talprov.openstack.provider import OpenStackProvider
from talprov.openstack.servers import MAX_COMPUTE_MICROVERSION
from talprov.testing.openstack import nova_versions
from talprov.testing.openstack.wire import Request, Response
from tests.emulators.factory import FakeImageFactory
from tests.emulators.openstack import FakeOpenStack
from tests.unit.openstack.harness import Harness


def _asked_versions(cloud: FakeOpenStack) -> list[str]:
    """Records the compute version of every server create and server listing."""
    asked: list[str] = []

    def note(req: Request, _: Response) -> None:
        asked.append(req.header("openstack-api-version") or "none")

    cloud.after("POST", r"/servers$", note)
    cloud.after("GET", r"/servers/detail$", note)
    return asked


@pytest.mark.parametrize(("nova_max", "expected"), [
    ((2, 96), "compute 2.96"),    # Nova older than talprov's newest: Nova's newest
    ((2, 60), "compute 2.60"),
    ((2, 120), f"compute {MAX_COMPUTE_MICROVERSION}"),  # newer Nova: talprov's newest
])
def test_the_highest_version_both_sides_know(
        openstack_cloud: FakeOpenStack, shared_image_factory: FakeImageFactory,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        nova_max: tuple[int, int], expected: str) -> None:
    monkeypatch.setattr(nova_versions, "MAX_VERSION", nova_max)
    harness = Harness(openstack_cloud, shared_image_factory, tmp_path)
    asked = _asked_versions(openstack_cloud)
    harness.provision(harness.request("mv-1"))
    assert asked
    assert set(asked) == {expected}


def test_a_pinned_compute_api_version_wins(
        openstack_cloud: FakeOpenStack, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    harness = Harness(openstack_cloud, shared_image_factory, tmp_path)

    def pinned(config: OpenStackConfig) -> Any:
        assert config.auth is not None
        return openstack.connect(auth=config.auth.to_sdk(), auth_type=config.auth.auth_type,
                                 load_yaml_config=False, load_envvars=False,
                                 region_name=config.region, compute_api_version="2.55")

    harness.provider = OpenStackProvider("os-test", harness.config, harness.runtime,
                                         connector=pinned)
    asked = _asked_versions(openstack_cloud)
    harness.provision(harness.request("mv-2"))
    assert asked
    assert set(asked) == {"compute 2.55"}


def test_the_microversion_is_chosen_once_per_connection_unless_none(
        openstack_cloud: FakeOpenStack, shared_image_factory: FakeImageFactory,
        tmp_path: Path) -> None:
    # Choosing read the version document's cache and compared versions on every
    # server create: 0.2 ms of CPU each, more than building the request.
    client = Harness(openstack_cloud, shared_image_factory, tmp_path).provider.client
    asked = _asked_versions(openstack_cloud)
    chosen: list[str | None] = []

    def choose(proxy: Any) -> str | None:
        chosen.append("2.60")
        return "2.60"

    for _ in range(3):
        client.list_json("list servers", "compute", "/servers/detail", "servers",
                         microversion=choose)
    assert chosen == ["2.60"]
    assert asked == ["compute 2.60"] * 3

    # None (Nova names no maximum, or discovery failed) is not kept: asked again.
    unknown: list[None] = []

    def choose_none(proxy: Any) -> None:
        unknown.append(None)

    for _ in range(2):
        client.list_json("list servers", "compute", "/servers/detail", "servers",
                         microversion=choose_none)
    assert len(unknown) == 2
    assert asked[3:] == ["none", "none"]

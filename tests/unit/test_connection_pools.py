"""Providers keep a connection for every step the reconciler runs at once: with a
smaller pool urllib3 discards connections (warning "Connection pool is full" for
each) and opens new ones. The AWS case is shown end to end in
tests/unit/service/test_aws_e2e.py (concurrency 16 on moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime, SharesConnections
from talprov.proxmox.provider import ProxmoxProvider
from talprov.registry import build_provider
from talprov.testing import FakeClock


def _built(block: dict[str, Any], tmp_path: Path) -> Any:
    clock = FakeClock()
    runtime = Runtime(cache_dir=tmp_path, clock=clock, sleep=clock.sleep)
    return build_provider("x", block, runtime, where="providers.x")


def test_the_aws_pools_hold_every_concurrent_step_and_launch(tmp_path: Path) -> None:
    provider = _built({"type": "aws", "region": "eu-west-1", "concurrency": 16,
                       "launch_concurrency": 4}, tmp_path)
    assert isinstance(provider, SharesConnections)
    assert isinstance(provider, AwsProvider)
    assert _pool_size(provider) >= 16 + 4
    default = _built({"type": "aws", "region": "eu-west-1"}, tmp_path)
    assert _pool_size(default) >= 8 + 8  # the defaults: concurrency and launch_concurrency


def _pool_size(provider: AwsProvider) -> int:
    return int(getattr(provider.clients._botocore_config(), "max_pool_connections"))  # noqa: B009


def test_the_proxmox_session_keeps_a_connection_per_concurrent_step(tmp_path: Path) -> None:
    for extra in ({}, {"fingerprint": "AB:" * 31 + "AB"}):
        provider = _built({"type": "proxmox", "url": "https://pve.invalid:8006",
                           "token_id": "root@pam!t", "token_secret": "s" * 36,
                           "concurrency": 16, **extra}, tmp_path)
        assert isinstance(provider, SharesConnections)
        assert isinstance(provider, ProxmoxProvider)
        adapter = provider.client._session.get_adapter("https://pve.invalid:8006/api2/json")
        assert adapter._pool_maxsize >= 16, extra


def test_the_openstack_session_keeps_a_connection_per_concurrent_step(tmp_path: Path) -> None:
    from talprov.openstack.provider import OpenStackProvider

    provider = _built({"type": "openstack", "concurrency": 16, "auth": {
        "auth_url": "https://keystone.invalid:5000/v3", "username": "u", "password": "p",
        "project_name": "p", "user_domain_name": "Default",
        "project_domain_name": "Default"}}, tmp_path)
    assert isinstance(provider, SharesConnections)
    assert isinstance(provider, OpenStackProvider)
    # openstack.connect authenticates lazily: building the session calls nothing.
    session = provider.client.conn.session.session
    for url in ("https://nova.invalid:8774/v2.1", "http://nova.invalid:8774/v2.1"):
        assert session.get_adapter(url)._pool_maxsize >= 16, url

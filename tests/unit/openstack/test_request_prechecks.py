"""Settings of provider_data the cloud would refuse are found with the lookups,
before anything is created (QA: an unknown floating_ip_pool was found only once
the server was ACTIVE, its server and port left until the request was deleted)."""

from __future__ import annotations

import pytest

from talprov.providers.errors import InvalidRequest
from tests.unit.openstack.harness import Harness

NETWORK_CALLS = r"/v2\.0/networks"


def test_an_unknown_floating_ip_pool_fails_before_anything_is_created(
        harness: Harness) -> None:
    with pytest.raises(InvalidRequest, match=r"provider_data\.floating_ip_pool") as failed:
        harness.provision(harness.request("nopool-1", floating_ip_pool="nopool"))
    assert "'nopool'" in str(failed.value)
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
    assert harness.cloud.count_calls("POST", r"/servers$") == 0


def test_the_pool_is_looked_up_with_the_other_names_once(harness: Harness) -> None:
    harness.provision(harness.request("pool-1", floating_ip_pool="public"))
    harness.cloud.calls.clear()
    ctx = harness.provision(harness.request("pool-2", floating_ip_pool="public"))
    assert ctx.state.floating_ip_id is not None
    # Cached by the first request: neither the steps nor the floating IP ask again.
    assert harness.cloud.count_calls("GET", NETWORK_CALLS) == 0

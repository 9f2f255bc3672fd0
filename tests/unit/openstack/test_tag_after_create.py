"""Ports and floating IPs on a Neutron without tag-on-create (issue 15, hole 2).

Such a Neutron lists ``standard-attr-tag`` but not ``tag-creation`` (nor
``tag-ports-during-bulk-creation``) and answers a create carrying ``tags`` with
400 "Unrecognized attribute(s) 'tags'" (neutron's API layer, checked against
its source); tags are then set with ``PUT /v2.0/{resources}/{id}/tags``.
"""

from __future__ import annotations

import pytest

from talprov.openstack.tagging import TaggingFailed
from talprov.providers.errors import Transient
from tests.unit.openstack.harness import Harness


@pytest.fixture
def old_neutron(harness: Harness) -> Harness:
    harness.cloud.without_tag_on_create()
    return harness


def _step_ctx(harness: Harness, request_id: str):  # type: ignore[no-untyped-def]
    """A request provisioned up to (not including) ensure-floating-ip."""
    ctx = harness.context(harness.request(request_id, floating_ip_pool="public"))
    for step in harness.provider.steps():
        if step.name == "ensure-floating-ip":
            return ctx
        harness.run_step(step.name, ctx)
    raise AssertionError("no ensure-floating-ip step")


def test_ports_and_floating_ip_are_tagged_after_create(old_neutron: Harness) -> None:
    harness = old_neutron
    ctx = harness.provision(harness.request("old-1", floating_ip_pool="public"))
    (fip,) = harness.cloud.floating_ips()
    assert "talprov-request=old-1" in fip.tags
    assert fip.port_id == ctx.state.port_ids[0]
    assert all("talprov-request=old-1" in p.tags for p in harness.cloud.ports())
    harness.deprovision(ctx)
    assert harness.cloud.floating_ips() == []
    assert harness.cloud.ports() == []


def test_the_extension_list_is_read_once_per_provider_instance(old_neutron: Harness) -> None:
    harness = old_neutron
    for n in range(2):
        harness.provision(harness.request(f"ext-{n}", floating_ip_pool="public"))
    listed = [c for c in harness.cloud.calls if c[0] == "GET" and c[1].endswith("/extensions")]
    assert len(listed) == 1


def test_a_neutron_with_tag_creation_gets_tags_in_the_create(harness: Harness) -> None:
    harness.provision(harness.request("new-1", floating_ip_pool="public"))
    assert not [c for c in harness.cloud.calls if c[0] == "PUT" and c[1].endswith("/tags")]
    assert "talprov-request=new-1" in harness.cloud.floating_ips()[0].tags


def test_a_tag_call_that_fails_for_good_releases_the_floating_ip(old_neutron: Harness) -> None:
    harness = old_neutron
    ctx = _step_ctx(harness, "rel-1")
    harness.cloud.fail_next("PUT", r"/floatingips/[^/]+/tags$", 400)
    with pytest.raises(TaggingFailed, match="deleted again"):
        harness.run_step("ensure-floating-ip", ctx)
    assert harness.cloud.floating_ips() == []
    assert any("deleted it again" in e for e in ctx.events)


def test_what_cannot_be_released_is_named(old_neutron: Harness) -> None:
    harness = old_neutron
    ctx = _step_ctx(harness, "left-1")
    harness.cloud.fail_next("PUT", r"/floatingips/[^/]+/tags$", 400)
    harness.cloud.fail_next("DELETE", r"/floatingips/[^/]+$", 403)
    with pytest.raises(TaggingFailed) as failed:
        harness.run_step("ensure-floating-ip", ctx)
    (fip,) = harness.cloud.floating_ips()
    assert f"floating IP {fip.id}" in str(failed.value)
    assert "left behind untagged" in str(failed.value)
    assert any(fip.id in e and "left behind" in e for e in ctx.events)


def test_an_untagged_floating_ip_from_an_earlier_attempt_is_adopted(
        old_neutron: Harness) -> None:
    harness = old_neutron
    ctx = _step_ctx(harness, "adopt-1")
    harness.cloud.fail_next("PUT", r"/floatingips/[^/]+/tags$", 503, count=50)
    with pytest.raises(Transient):
        harness.run_step("ensure-floating-ip", ctx)
    (untagged,) = harness.cloud.floating_ips()
    assert untagged.tags == []
    with harness.cloud.lock:  # the tag service is back
        harness.cloud.state.faults.routes.clear()
    harness.run_step("ensure-floating-ip", ctx)
    (fip,) = harness.cloud.floating_ips()
    assert fip.id == untagged.id
    assert "talprov-request=adopt-1" in fip.tags

"""ensure-ports for a pass's requests: one bulk create, each request's error its own."""

from __future__ import annotations

from talprov.openstack.data import OpenStackData
from talprov.openstack.state import OpenStackState
from talprov.providers.errors import ProviderError, Transient
from talprov.providers.protocol import StepContext
from talprov.testing.openstack.wire import Request, Response
from tests.unit.openstack.harness import Harness

BULK = r"/v2\.0/ports$"


def _contexts(harness: Harness, *requests: tuple[str, dict[str, object]]) -> list[
        StepContext[OpenStackData, OpenStackState]]:
    return [harness.context(harness.request(rid, **data)) for rid, data in requests]


def test_a_pass_makes_its_ports_in_one_bulk_create_each_tagged(harness: Harness) -> None:
    ctxs = _contexts(harness, ("a", {}), ("b", {}), ("c", {}))
    harness.cloud.calls.clear()
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None, None]
    assert harness.cloud.count_calls("POST", BULK) == 1
    ports = {p.id: p for p in harness.cloud.ports()}
    for ctx in ctxs:
        (port_id,) = ctx.state.port_ids
        assert ports[port_id].name == f"{ctx.request.id}-0"
        assert f"talprov-request={ctx.request.id}" in ports[port_id].tags
        assert "talprov-port=0" in ports[port_id].tags
    # Again: every port is found by its tags, nothing is created.
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None, None]
    assert harness.cloud.count_calls("POST", BULK) == 1
    assert len(harness.cloud.ports()) == 3


def test_one_bad_port_fails_its_own_request_only(harness: Harness) -> None:
    taken = {"network": "private", "fixed_ips": [{"ip_address": "10.0.0.77"}]}
    first = _contexts(harness, ("holder", {"networks": [], "ports": [taken]}))
    assert harness.provider.ports.ensure_batch(first) == [None]
    ctxs = _contexts(harness, ("a", {}), ("clash", {"networks": [], "ports": [taken]}),
                     ("b", {}))
    harness.cloud.calls.clear()
    outcomes = harness.provider.ports.ensure_batch(ctxs)
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], ProviderError)
    assert "10.0.0.77" in str(outcomes[1])
    # The bulk was refused whole (Neutron made none of it); each request then alone.
    assert harness.cloud.count_calls("POST", BULK) == 4
    assert ctxs[1].state.port_ids == []
    assert {p.name for p in harness.cloud.ports()} == {"holder-0", "a-0", "b-0"}


def test_a_lost_answer_to_the_bulk_create_makes_no_second_port(harness: Harness) -> None:
    def lose_answer(req: Request, response: Response) -> None:
        if isinstance((req.json() or {}).get("ports"), list) and response.status == 201:
            response.status, response.body = 503, {"NeutronError": {
                "type": "ServiceUnavailable", "message": "lost", "detail": ""}}

    harness.cloud.after("POST", BULK, lose_answer)
    ctxs = _contexts(harness, ("a", {}), ("b", {}))
    outcomes = harness.provider.ports.ensure_batch(ctxs)
    assert all(isinstance(o, Transient) for o in outcomes)
    assert harness.cloud.count_calls("POST", BULK) == 1  # no one-by-one after a 5xx
    # The next pass finds what the lost create made, by tag.
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None]
    assert harness.cloud.count_calls("POST", BULK) == 1
    assert sorted(p.name for p in harness.cloud.ports()) == ["a-0", "b-0"]

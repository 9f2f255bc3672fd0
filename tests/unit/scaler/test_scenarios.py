"""The issue's "What it must show" scenarios, at the plan level, in a simulated world."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from talprov.providers.types import Stage
from talprov.scaler.actions import ActionKind
from talprov.scaler.models import CONTROL_PLANE_SET
from talprov.scaler.plan import plan, plan_destroy
from talprov.scaler.templates import template_hash

from .world import START, World, etcd_safe, make_spec


def converged_world(**spec_args: object) -> tuple[World, int]:
    world = World()
    passes = world.converge(make_spec(**spec_args))  # type: ignore[arg-type]
    return world, passes


def test_three_control_planes_and_two_workers_converge_to_five() -> None:
    spec = make_spec(cp=3, workers=2)
    world = World()
    first = world.plan(spec)
    assert first.summary == {"create": 5, "delete": 0, "replace": 0}
    assert Counter(a.set for a in first.actions) == {CONTROL_PLANE_SET: 3, "workers": 2}
    world.converge(spec)
    assert world.provisioned(CONTROL_PLANE_SET) == 3
    assert world.provisioned("workers") == 2
    assert len(world.machines) == 5
    assert world.matches(spec)
    assert world.creates == 5
    roles = {a.create.labels["talprov.role"] for a in first.actions if a.create}
    assert roles == {"controlplane", "worker"}


def test_workers_to_five_plans_exactly_three_creates() -> None:
    world, _ = converged_world(cp=3, workers=2)
    result = world.plan(make_spec(cp=3, workers=5))
    assert result.summary == {"create": 3, "delete": 0, "replace": 0}
    assert {a.set for a in result.actions} == {"workers"}
    assert all(a.request.startswith("demo-workers-") for a in result.actions)
    assert len({a.request for a in result.actions}) == 3


def test_workers_to_one_deletes_four_by_priority() -> None:
    spec5 = make_spec(cp=3, workers=5)
    world = World()
    world.converge(spec5)
    workers = sorted(world.in_set("workers"), key=lambda m: m.request_id)
    # Give each worker a distinct age and one priority reason each.
    for age, machine in enumerate(workers):
        world.add(replace(machine, created_at=START - timedelta(hours=age)))
    marked, failed, pending, oldest, newest = (m.request_id for m in workers)
    world.add(replace(world.machines[marked], marked_for_deletion=True,
                      created_at=START + timedelta(hours=5)))
    world.add(replace(world.machines[failed], stage=Stage.FAILED, error="boom"))
    world.add(replace(world.machines[pending], stage=Stage.PROVISIONING, provisioned_at=None,
                      created_at=world.now))
    world.add(replace(world.machines[oldest], created_at=START - timedelta(days=30)))
    world.add(replace(world.machines[newest], created_at=START + timedelta(days=1)))

    result = world.plan(make_spec(cp=3, workers=1))

    assert result.summary == {"create": 0, "delete": 4, "replace": 0}
    assert [a.request for a in result.actions] == [marked, failed, pending, oldest]
    assert all(a.reason == "scale down to 1" for a in result.actions)


def test_in_flight_deletions_count_toward_the_target() -> None:
    world, _ = converged_world(cp=3, workers=5)
    spec1 = make_spec(cp=3, workers=1)
    world.apply(world.plan(spec1))  # four victims now deprovisioning, not yet gone
    again = world.plan(spec1)
    assert again.empty, again.actions


@pytest.mark.parametrize("domains", [(), ("a", "b", "c")])
def test_talos_upgrade_replaces_all_without_dropping_below_size(
    domains: tuple[str, ...]
) -> None:
    world, _ = converged_world(cp=3, workers=4, surge=1, unavailable=0, domains=domains)
    upgraded = make_spec(cp=3, workers=4, surge=1, unavailable=0, version="v1.12.0",
                         domains=domains)
    before = set(world.machines)
    for _ in range(80):
        result = world.plan(upgraded)
        world.apply(result)
        for name, machine_set in upgraded.sets.items():
            assert world.provisioned(name) >= machine_set.size, (name, world.passes)
            # Surge 1: never more than size + 1 machines alive in a set.
            assert world.live(name) <= machine_set.size + 1
        world.advance()
        for name, machine_set in upgraded.sets.items():
            assert world.provisioned(name) >= machine_set.size
        world.passes += 1
        if world.matches(upgraded):
            break
    assert world.matches(upgraded)
    assert not before & set(world.machines), "every machine was replaced"
    assert world.creates == 7 + 7  # the first seven, then one replacement each
    if domains:
        assert Counter(m.domain for m in world.in_set("workers")) == {"a": 2, "b": 1, "c": 1}


def test_max_unavailable_rollout_keeps_size_minus_unavailable() -> None:
    world, _ = converged_world(cp=1, workers=6, surge=0, unavailable=2)
    upgraded = make_spec(cp=1, workers=6, surge=0, unavailable=2, version="v1.12.0")
    for _ in range(40):
        result = world.plan(upgraded)
        world.apply(result)
        assert world.provisioned("workers") >= 4
        assert world.live("workers") <= 6
        world.advance()
        if world.matches(upgraded):
            break
    assert world.matches(upgraded)


def test_control_planes_are_replaced_one_at_a_time_surge_first() -> None:
    world, _ = converged_world(cp=3, workers=0)
    upgraded = make_spec(cp=3, workers=0, version="v1.12.0")
    first = world.step(upgraded)
    assert [a.action for a in first.actions] == [ActionKind.CREATE]
    for _ in range(40):
        result = world.plan(upgraded)
        changes = [a for a in result.actions if a.set == CONTROL_PLANE_SET]
        assert len(changes) <= 1
        assert etcd_safe(world, CONTROL_PLANE_SET, result)
        world.apply(result)
        world.advance()
        if world.matches(upgraded):
            break
    assert world.matches(upgraded)


def test_failing_provider_backs_off_then_stops_at_the_circuit_breaker() -> None:
    spec = make_spec(cp=3, workers=2)
    world = World(fail_creates=True)
    statuses = []
    for _ in range(200):
        result = world.step(spec)
        statuses.append({s.name: s for s in result.sets})
        world.now += timedelta(minutes=5)  # time passes beyond any backoff
    # One create per machine and no more: the breaker stops remediation for good.
    assert world.creates == 5
    last = statuses[-1]
    assert last["workers"].circuit_breaker_open
    assert last[CONTROL_PLANE_SET].circuit_breaker_open
    assert last["workers"].failed == 2
    assert world.backoff["workers"].failures >= 1


def test_backoff_holds_creates_and_is_reported() -> None:
    spec = make_spec(cp=1, workers=3)
    world = World(fail_creates=True)
    world.step(spec)  # everything fails, both sets back off
    world.fail_creates = False
    for machine in list(world.machines.values()):
        del world.machines[machine.request_id]  # an operator cleared the failures
    held = world.plan(spec)
    assert held.empty
    status = {s.name: s for s in held.sets}
    assert status["workers"].backoff_until == world.backoff["workers"].until
    assert any("backoff" in note for note in status["workers"].notes)
    world.now = world.backoff["workers"].until
    assert world.plan(spec).summary["create"] == 4


def test_one_failure_is_remediated_within_max_in_flight() -> None:
    world, _ = converged_world(cp=3, workers=5, max_unhealthy="40%")
    spec = make_spec(cp=3, workers=5)
    broken = sorted(world.in_set("workers"), key=lambda m: m.request_id)[:2]
    for machine in broken:
        world.add(replace(machine, stage=Stage.FAILED, error="disk died"))
    result = world.plan(spec)
    # maxInFlight 1: one replacement now, the other once it is up.
    assert [a.action for a in result.actions] == [ActionKind.REPLACE]
    assert result.actions[0].replaces == min(m.request_id for m in broken)
    assert result.actions[0].reason == "remediation: failed: disk died"
    world.converge(spec)
    assert world.matches(spec)


def test_provision_timeout_and_drift_are_replaced() -> None:
    world, _ = converged_world(cp=3, workers=3, max_unhealthy="100%")
    spec = make_spec(cp=3, workers=3, max_unhealthy="100%")
    slow, vanished, _ = sorted(world.in_set("workers"), key=lambda m: m.request_id)
    world.add(replace(slow, stage=Stage.PROVISIONING, provisioned_at=None,
                      created_at=world.now - timedelta(minutes=16)))
    world.add(replace(vanished, machine_present=False))
    result = plan(spec, world.observed(), world.now,
                  name_gen=None)  # default name generator is deterministic too
    reasons = {a.replaces: a.reason for a in result.actions}
    assert reasons == {slow.request_id: "remediation: not provisioned within provisionTimeout"}
    world.converge(spec)
    assert world.matches(spec)
    assert vanished.request_id not in world.machines


def test_new_machines_spread_and_victims_come_from_the_fullest_domain() -> None:
    spec = make_spec(cp=3, workers=6, domains=("a", "b", "c"))
    world = World()
    world.converge(spec)
    assert Counter(m.domain for m in world.in_set("workers")) == {"a": 2, "b": 2, "c": 2}
    assert Counter(m.domain for m in world.in_set(CONTROL_PLANE_SET)) == {"a": 1, "b": 1, "c": 1}
    # Unbalance: move one machine of "c" to "a" (same template hash as "a").
    moved = next(m for m in world.in_set("workers") if m.domain == "c")
    world.add(replace(moved, domain="a", template_hash=template_hash(spec, "workers", "a")))
    result = world.plan(make_spec(cp=3, workers=5, domains=("a", "b", "c")))
    assert [world.machines[a.request].domain for a in result.actions] == ["a"]
    grow = world.plan(make_spec(cp=3, workers=8, domains=("a", "b", "c")))
    assert sorted(a.domain or "" for a in grow.actions) == ["b", "c"]


def test_random_delete_order_is_deterministic() -> None:
    world, _ = converged_world(cp=1, workers=8, delete_order="random")
    spec = make_spec(cp=1, workers=3, delete_order="random")
    first = [a.request for a in world.plan(spec).actions]
    second = [a.request for a in world.plan(spec).actions]
    assert first == second
    assert len(set(first)) == 5
    by_seed = {
        tuple(a.request for a in plan(spec, world.observed(), world.now, seed=seed).actions)
        for seed in "abcdef"
    }
    assert len(by_seed) > 1, "the seed decides the order"


def test_removed_worker_set_is_deleted_but_a_missing_control_plane_is_kept() -> None:
    world, _ = converged_world(cp=1, workers=2, extra_workers={"gpu": 2})
    result = world.plan(make_spec(cp=1, workers=2))
    assert result.summary == {"create": 0, "delete": 2, "replace": 0}
    assert {a.set for a in result.actions} == {"gpu"}
    assert all(a.reason == "set is no longer in the spec" for a in result.actions)


def test_destroy_deletes_everything() -> None:
    world, _ = converged_world(cp=3, workers=2)
    result = plan_destroy("demo", world.observed())
    assert result.summary["delete"] == 5
    world.apply(result)
    world.advance()
    assert not world.machines


def test_converged_cluster_plans_nothing() -> None:
    world, _ = converged_world(cp=3, workers=2, domains=("a", "b"))
    result = world.plan(make_spec(cp=3, workers=2, domains=("a", "b")))
    assert result.empty
    workers = {s.name: s for s in result.sets}["workers"]
    assert (workers.desired, workers.provisioned, workers.outdated) == (2, 2, 0)


def test_deleting_machines_are_not_deleted_twice() -> None:
    world, _ = converged_world(cp=1, workers=3)
    victim = world.in_set("workers")[0]
    world.add(replace(victim, stage=Stage.DEPROVISIONING))
    result = world.plan(make_spec(cp=1, workers=2))
    assert result.empty
    grown = world.plan(make_spec(cp=1, workers=3))
    assert grown.summary["create"] == 1

"""Focused plan() behaviour: quorum guard, orphans, backoff, ids, output shape, priorities."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from talprov.providers.types import Stage
from talprov.scaler.actions import ActionKind
from talprov.scaler.models import CONTROL_PLANE_SET
from talprov.scaler.observed import BACKOFF_CAP, ObservedMachine, OrphanMachine, next_backoff
from talprov.scaler.plan import ORPHAN_GRACE, plan, plan_destroy
from talprov.scaler.priorities import pick_domains
from talprov.scaler.setplan import quorum, tolerated_failures
from talprov.scaler.spec import load_spec
from talprov.scaler.templates import SUFFIX_LEN, random_names, seeded_names, template_hash

from .world import START, World, make_spec

CANARY = "CANARY-d41d8cd98f"


def machine(spec_hash: str, name: str, set_name: str = CONTROL_PLANE_SET,
            stage: Stage = Stage.PROVISIONED, **changes: object) -> ObservedMachine:
    base = ObservedMachine(
        request_id=name, set_name=set_name, stage=stage, template_hash=spec_hash,
        created_at=START - timedelta(hours=1),
        provisioned_at=START if stage is Stage.PROVISIONED else None,
        machine_present=True if stage is Stage.PROVISIONED else None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_quorum_guard_keeps_a_healthy_member_when_quorum_would_be_lost() -> None:
    spec = make_spec(cp=4, workers=0)
    current = template_hash(spec, CONTROL_PLANE_SET, None)
    observed = [
        machine(current, "h1", marked_for_deletion=True),
        machine(current, "h2"),
        machine(current, "h3"),
        machine(current, "f1", stage=Stage.FAILED, provisioned_at=START),
        machine(current, "f2", stage=Stage.FAILED, provisioned_at=START),
    ]
    result = plan(spec, observed, START)
    assert not [a for a in result.actions if a.action is ActionKind.DELETE]
    notes = result.sets[0].notes
    assert any("etcd quorum guard" in note and "h1" in note for note in notes), notes


def test_control_plane_waits_while_a_member_is_being_deleted() -> None:
    spec = make_spec(cp=3, workers=0, version="v1.12.0")
    old = "old"
    observed = [machine(old, f"cp{i}") for i in range(3)]
    observed.append(machine(old, "cp3", stage=Stage.DEPROVISIONING))
    result = plan(spec, observed, START)
    assert result.empty
    assert any("control-plane change is in progress" in n for n in result.sets[0].notes)


def test_orphans_wait_for_the_grace_period_and_are_rate_limited() -> None:
    spec = make_spec(cp=1, workers=0)
    world = World()
    world.converge(spec)
    now = world.now
    old = [OrphanMachine(f"i-{n:03d}", "fake", now - ORPHAN_GRACE - timedelta(minutes=n))
           for n in range(25)]
    young = [OrphanMachine("i-new", "fake", now - timedelta(minutes=1), request_id="x-1")]
    result = plan(spec, world.observed(), now, orphans=old + young)
    deletes = [a for a in result.actions if a.infra_id is not None]
    # 1 request + 26 orphans known: at most max(1, 10%) = 2 per pass, oldest first.
    assert [a.infra_id for a in deletes] == ["i-024", "i-023"]
    assert all(a.provider == "fake" and a.action is ActionKind.DELETE for a in deletes)
    decisions = {r.infra_id: r.decision for r in result.orphans}
    assert decisions["i-new"] == "wait: grace period"
    assert decisions["i-000"].startswith("hold: at most 2")
    single = plan(spec, world.observed(), now, orphans=old[:1])
    assert [a.infra_id for a in single.actions] == ["i-000"]


def test_next_backoff_grows_exponentially_and_is_capped() -> None:
    first = next_backoff(None, START)
    second = next_backoff(first, START)
    third = next_backoff(second, START)
    assert (first.failures, second.failures, third.failures) == (1, 2, 3)
    assert first.until - START == timedelta(seconds=30)
    assert second.until - START == timedelta(seconds=60)
    assert third.until - START == timedelta(seconds=120)
    many = first
    for _ in range(100):
        many = next_backoff(many, START)
    assert many.until - START == BACKOFF_CAP


def test_plan_json_shape_and_no_secrets(tmp_path: Path) -> None:
    (tmp_path / "cp.yaml").write_text(
        f"version: v1alpha1\nmachine:\n  type: controlplane\n  token: {CANARY}\n")
    text = (
        "kind: Cluster\nname: demo\ntalos: {version: v1.13.9}\n"
        f"join: {{api_url: 'https://omni.example/?jointoken={CANARY}'}}\n---\n"
        "kind: MachineClass\nname: c\nprovider: fake\n---\n"
        "kind: ControlPlane\nmachineClass: {name: c, size: 1}\nconfig: {file: cp.yaml}\n"
    )
    spec = load_spec(text, "c.yaml", tmp_path)
    result = plan(spec, [], START)
    body = result.to_dict()
    assert set(body) >= {"cluster", "actions", "summary"}
    assert body["summary"] == {"create": 1, "delete": 0, "replace": 0}
    assert set(body["actions"][0]) >= {"action", "set", "request", "reason"}
    status = body["sets"][0]
    assert {"name", "desired", "provisioned", "provisioning", "failed", "outdated"} <= set(status)
    rendered = json.dumps(body) + repr(result) + str(result.actions)
    assert CANARY not in rendered
    create = result.actions[0].create
    assert create is not None
    assert CANARY in create.machine_config.get_secret_value()  # the secret is there, unseen


def test_request_ids_are_valid_unique_and_injectable() -> None:
    spec = make_spec(cp=3, workers=4)
    result = plan(spec, [], START, name_gen=random_names)
    ids = [a.request for a in result.actions]
    assert len(set(ids)) == 7
    assert all(len(i.rsplit("-", 1)[1]) == SUFFIX_LEN for i in ids)
    assert {i.rsplit("-", 1)[0] for i in ids} == {"demo-control-planes", "demo-workers"}
    # A generator that repeats an existing id is asked again.
    scripted = ["demo-workers-aaaaa", "demo-workers-aaaaa", "demo-workers-bbbbb"]
    counter = iter(range(100))

    def scripted_names(prefix: str) -> str:
        if prefix == "demo-workers" and scripted:
            return scripted.pop(0)
        return f"{prefix}-{next(counter):05d}"

    taken = [machine("x", "demo-workers-aaaaa", set_name="workers")]
    again = plan(make_spec(cp=1, workers=2), taken, START, name_gen=scripted_names)
    created = [a.request for a in again.actions if a.action is not ActionKind.DELETE]
    assert "demo-workers-aaaaa" not in created
    assert "demo-workers-bbbbb" in created
    assert not scripted
    with pytest.raises(RuntimeError, match="no free, valid request id"):
        plan(spec, [], START, name_gen=lambda prefix: "Not_Valid")


def test_seeded_names_are_deterministic() -> None:
    first, second = seeded_names("s"), seeded_names("s")
    assert [first("p") for _ in range(5)] == [second("p") for _ in range(5)]


def test_pick_domains_fills_the_emptiest_first_in_listed_order() -> None:
    counts: dict[str | None, int] = {"a": 2, "b": 0, "c": 1}
    assert pick_domains(["a", "b", "c"], counts, 4) == ["b", "b", "c", "a"]
    assert counts == {"a": 3, "b": 2, "c": 2}


def test_removing_the_control_plane_document_keeps_its_machines(tmp_path: Path) -> None:
    text = (
        "kind: Cluster\nname: demo\ntalos: {version: v1.13.9}\n---\n"
        "kind: MachineClass\nname: c\nprovider: fake\n---\n"
        "kind: Workers\nname: workers\nmachineClass: {name: c, size: 0}\n"
        'config: {inline: "version: v1alpha1\\nmachine: {type: worker}"}\n'
    )
    spec = load_spec(text, "c.yaml", tmp_path)
    result = plan(spec, [machine("x", "cp-1")], START)
    assert result.empty
    status = {s.name: s for s in result.sets}[CONTROL_PLANE_SET]
    assert "machines are kept" in status.notes[0]


def test_unknown_machine_presence_is_not_drift() -> None:
    spec = make_spec(cp=1, workers=1)
    world = World()
    world.converge(spec)
    for m in list(world.machines.values()):
        world.add(replace(m, machine_present=None))
    assert world.plan(spec).empty


def test_every_delete_names_its_victims_failure_domain() -> None:
    """QA: `plan` showed deletes without "in DOMAIN" (table and JSON) while creates
    and replaces had it; a delete's domain is its victim's talprov.domain label."""
    domains = ("a", "b", "c")
    spec = make_spec(cp=3, workers=3, domains=domains, extra_workers={"gone": 1})
    world = World()
    world.converge(spec)
    by_id = {m.request_id: m for m in world.observed()}
    assert {m.domain for m in by_id.values()} == set(domains)
    # Scaling down, a removed set and a rolling update, over every pass.
    smaller = make_spec(cp=3, workers=1, domains=domains, version="v1.12.0")
    deletes = []
    for _ in range(40):
        result = world.plan(smaller)
        deletes += [(a, world.machines[a.request]) for a in result.actions
                    if a.action is ActionKind.DELETE]
        world.apply(result)
        world.advance()
        world.passes += 1
        if world.matches(smaller):
            break
    assert world.matches(smaller)
    assert {a.set for a, _ in deletes} >= {"workers", "gone"}
    for action, victim in deletes:
        assert victim.domain in domains
        assert action.domain == victim.domain
        assert action.to_dict()["domain"] == victim.domain
    # Destroy, and an orphan that carries the label.
    orphan = OrphanMachine("i-1", "fake", START, request_id="x-1", set_name="workers",
                           domain="b")
    destroyed = plan_destroy("demo", world.observed(), [orphan])
    assert destroyed.actions
    for action in destroyed.actions:
        expected = "b" if action.infra_id else world.machines[action.request].domain
        assert action.domain == expected


# etcd's FAQ ("Why an odd number of cluster members?"): cluster size, majority,
# failure tolerance.
ETCD_FAILURE_TOLERANCE = [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2), (6, 4, 2),
                          (7, 4, 3), (8, 5, 3), (9, 5, 4)]


@pytest.mark.parametrize(("members", "majority", "tolerated"), ETCD_FAILURE_TOLERANCE)
def test_quorum_and_tolerated_failures_follow_etcds_table(
        members: int, majority: int, tolerated: int) -> None:
    assert quorum(members) == majority
    assert tolerated_failures(members) == tolerated


def test_running_members_sealed_under_another_key_are_rolled_out_surge_first() -> None:
    # Requests sealed under another TALPROV_STORE_KEY (after `apply --reseal`) are
    # not healthy members to keep, but a provisioned one is a running etcd member:
    # it is replaced as an outdated one is (a new member first, etcd quorum kept),
    # never deleted before its replacement is up. One not yet provisioned never
    # will be with this key: it is unhealthy and replaced at once.
    spec = make_spec(cp=3, workers=2, max_unhealthy="100%")
    cp_hash = template_hash(spec, CONTROL_PLANE_SET, None)
    worker_hash = template_hash(spec, "workers", None)
    observed = [machine(cp_hash, f"cp-{n}", unreadable=True) for n in range(3)]
    observed += [machine(worker_hash, "w-up"),
                 machine(worker_hash, "w-stuck", "workers", Stage.PROVISIONING,
                         created_at=START, unreadable=True)]
    observed[3] = replace(observed[3], set_name="workers")
    result = plan(spec, observed, START)
    status = {s.name: s for s in result.sets}
    cp = status[CONTROL_PLANE_SET]
    assert (cp.provisioned, cp.provisioning, cp.unreadable, cp.outdated) == (0, 0, 3, 3)
    cp_actions = [a for a in result.actions if a.set == CONTROL_PLANE_SET]
    assert [(a.action, a.replaces) for a in cp_actions] == [(ActionKind.CREATE, None)]
    workers = status["workers"]
    assert (workers.provisioned, workers.provisioning, workers.unreadable) == (1, 0, 1)
    [replaced] = [a for a in result.actions if a.set == "workers"]
    assert (replaced.action, replaced.replaces) == (ActionKind.REPLACE, "w-stuck")
    assert "TALPROV_STORE_KEY" in replaced.reason


def test_requests_sealed_under_another_key_do_not_open_the_circuit_breaker() -> None:
    # Review: after `apply --reseal`, every request of the old key not yet provisioned
    # counted as unhealthy, so three of them in a set of five (maxUnhealthy 40%) opened
    # the breaker: nothing was replaced, not even the machine that really failed.
    spec = make_spec(cp=1, workers=5, max_unhealthy="40%")
    worker_hash = template_hash(spec, "workers", None)
    observed = [machine(template_hash(spec, CONTROL_PLANE_SET, None), "cp"),
                machine(worker_hash, "w-up", "workers"),
                machine(worker_hash, "w-failed", "workers", Stage.FAILED,
                        created_at=START - timedelta(hours=3), error="disk died")]
    observed += [machine(worker_hash, f"w-sealed-{n}", "workers", Stage.PROVISIONING,
                         created_at=START - timedelta(hours=2), unreadable=True)
                 for n in range(3)]
    result = plan(spec, observed, START)
    [workers] = [s for s in result.sets if s.name == "workers"]
    assert workers.circuit_breaker_open is False, workers.notes
    assert workers.unreadable == 3
    # maxInFlight 1 still bounds them: the oldest (the failed machine) goes first.
    assert [(a.action, a.replaces, a.reason) for a in result.actions] == [
        (ActionKind.REPLACE, "w-failed", "remediation: failed: disk died")]


def test_a_running_member_sealed_under_another_key_is_rolled_out_for_that_reason() -> None:
    # Review: the plan called such a member "rolling update: outdated", which it is not.
    spec = make_spec(cp=1, workers=2, surge=0, unavailable=1)
    worker_hash = template_hash(spec, "workers", None)
    observed = [machine(template_hash(spec, CONTROL_PLANE_SET, None), "cp"),
                machine(worker_hash, "w-sealed", "workers", unreadable=True),
                machine(worker_hash, "w-up", "workers")]
    result = plan(spec, observed, START)
    assert [(a.action, a.replaces) for a in result.actions] == [
        (ActionKind.REPLACE, "w-sealed")]
    reason = result.actions[0].reason
    assert reason == "rolling update: sealed under another TALPROV_STORE_KEY"

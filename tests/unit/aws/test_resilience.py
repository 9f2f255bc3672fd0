"""Crashes, throttling, capacity errors and ownership: never two instances, never a foreign one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from talprov.aws.launching import subnet_order
from talprov.aws.state import AwsState
from talprov.providers.ownership import INSTALLATION_KEY, INSTANCE_KEY, REQUEST_KEY
from tests.emulators.moto import REGION, Fault, talos_ami_id
from tests.unit.aws.helpers import WORKER_CONFIG, Harness, make_request
from tests.unit.aws.loop import Tracked


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


def _crash_once_at(step_name: str) -> Callable[[Tracked, str], None]:
    fired: set[str] = set()

    def hook(tracked: Tracked, name: str) -> None:
        if name == step_name and tracked.request.id not in fired:
            fired.add(tracked.request.id)
            raise Crash(tracked.request.id)

    return hook


def _requests_of(harness: Harness) -> list[str]:
    """The request of every live instance, as one listing of the driver maps them."""
    listed = harness.provider.list_machines(harness.loop.owner)
    assert len(listed) == len(harness.instances())
    return sorted(m.request_id or "?" for m in listed)


@pytest.mark.parametrize("distinct_configs", [False, True], ids=["batch", "single"])
def test_crash_after_run_instances_before_state_write_creates_no_second_instance(
    harness: Harness, distinct_configs: bool
) -> None:
    ids = [f"w-{i}" for i in range(5)]
    for i, rid in enumerate(ids):
        config = WORKER_CONFIG + (f"# {i}\n" if distinct_configs else "")
        harness.loop.add(make_request(rid, config=config))
    harness.loop.before_persist = _crash_once_at("ensure-instance")

    with pytest.raises(Crash):
        harness.loop.run_pass()
    assert len(harness.instances()) == 5  # launched, but no request recorded its instance
    assert all(t.state.infra_id is None for t in harness.loop.requests.values())

    harness.restart()
    harness.loop.run_until_settled()

    assert _requests_of(harness) == ids
    for tracked in harness.loop.requests.values():
        assert tracked.failed is None
        assert tracked.state.infra_id is not None


def test_crash_right_after_a_batch_launch_leaves_nothing_to_repair(harness: Harness) -> None:
    ids = [f"w-{i}" for i in range(4)]
    for rid in ids:
        harness.loop.add(make_request(rid))
    harness.loop.before_persist = _crash_once_at("ensure-instance")
    with pytest.raises(Crash):
        harness.loop.run_pass()
    launched = harness.instances()
    assert len(launched) == 4
    # No per-instance tag is ever written; the listing knows which instance is whose.
    assert all(REQUEST_KEY not in {t["Key"] for t in raw["Tags"]} for raw in launched)
    listed = {m.request_id: m.infra_id for m in harness.provider.list_machines(harness.loop.owner)}
    assert set(listed) == set(ids)

    harness.restart()
    harness.loop.run_until_settled()

    assert _requests_of(harness) == ids
    assert harness.counter.calls["RunInstances"] == 1
    assert "CreateTags" not in harness.counter.calls
    assert {rid: t.state.infra_id for rid, t in harness.loop.requests.items()} == listed


def test_instances_tagged_by_the_old_one_key_per_member_scheme_are_adopted(
    harness: Harness,
) -> None:
    ami = talos_ami_id("v1.11.5", REGION, "amd64")
    tags = [{"Key": INSTALLATION_KEY, "Value": "talprov-test"},
            {"Key": INSTANCE_KEY, "Value": "aws-test"},
            {"Key": "talprov-member-w-0", "Value": ""}, {"Key": "talprov-member-w-1", "Value": ""}]
    reply = harness.raw_ec2().run_instances(
        ImageId=ami, MinCount=2, MaxCount=2,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    by_index = {raw["AmiLaunchIndex"]: raw["InstanceId"] for raw in reply["Instances"]}
    for rid in ("w-0", "w-1"):
        harness.loop.add(make_request(rid))

    harness.loop.run_until_settled()

    assert "RunInstances" not in harness.counter.calls
    assert harness.loop.requests["w-0"].state.infra_id == by_index[0]
    assert harness.loop.requests["w-1"].state.infra_id == by_index[1]


def test_rerunning_ensure_instance_with_lost_state_never_launches_twice(harness: Harness) -> None:
    tracked = harness.loop.add(make_request("solo"))
    harness.loop.run_until_settled()
    first = tracked.state.infra_id
    # Replay the step from an empty state (as if nothing had been saved), twice.
    for _ in range(2):
        harness.restart()
        tracked.state = harness.provider.state_model.model_validate(
            {"image_id": talos_ami_id("v1.13.9", REGION, "amd64"), "instance_types": ["t3.small"],
             "nonce": "different"}
        )
        tracked.step = 1
        harness.loop.run_until_settled()
        assert tracked.state.infra_id == first
    assert len(harness.instances()) == 1


def test_throttling_converges_without_a_leak(harness: Harness) -> None:
    for i in range(3):
        harness.loop.add(make_request(f"w-{i}"))
    fault = harness.faults.add(Fault("RunInstances", "RequestLimitExceeded", times=3, status=503))
    harness.faults.add(Fault("DescribeInstances", "Throttling", times=2, status=400))

    harness.loop.run_until_settled()

    assert fault.injected == 3
    assert _requests_of(harness) == ["w-0", "w-1", "w-2"]
    assert all(t.failed is None for t in harness.loop.requests.values())


def test_botocore_standard_retries_absorb_a_short_throttle(harness_factory: Any) -> None:
    harness = harness_factory(max_attempts=3)
    harness.loop.add(make_request("w-0"))
    harness.faults.add(Fault("RunInstances", "RequestLimitExceeded", times=1, status=503))

    harness.loop.run_until_settled()

    assert harness.counter.calls["RunInstances"] == 2  # one injected, one retried by botocore
    assert not any("attempt" in e for e in harness.loop.requests["w-0"].events)


def _default_subnets(harness: Harness) -> list[str]:
    subnets = harness.raw_ec2().describe_subnets()["Subnets"]
    return sorted(s["SubnetId"] for s in subnets if s.get("DefaultForAz"))[:3]


def test_capacity_error_in_first_subnet_lands_in_the_next(harness: Harness) -> None:
    subnets = _default_subnets(harness)
    first, second = subnet_order(subnets, "cap-1")[:2]
    harness.faults.add(Fault("RunInstances", "InsufficientInstanceCapacity", times=10, status=500,
                             only_if=lambda body: f"SubnetId={first}" in body))
    harness.loop.add(make_request("cap-1", provider_data={"instance_type": "t3.small",
                                                          "subnets": subnets}))

    harness.loop.run_until_settled()

    (raw,) = harness.instances()
    assert raw["SubnetId"] == second
    assert harness.loop.requests["cap-1"].failed is None


def test_capacity_everywhere_falls_back_to_the_next_instance_type(harness: Harness) -> None:
    harness.faults.add(Fault("RunInstances", "InsufficientInstanceCapacity", times=10, status=500,
                             only_if=lambda body: "InstanceType=t3a.medium" in body))
    harness.loop.add(make_request("cap-2", provider_data={"cpu": 2, "memory": 4096}))

    harness.loop.run_until_settled()

    (raw,) = harness.instances()
    assert raw["InstanceType"] != "t3a.medium"
    state = harness.loop.requests["cap-2"].state
    assert isinstance(state, AwsState)
    assert raw["InstanceType"] in state.instance_types


def test_quota_error_is_reported_clearly(harness: Harness) -> None:
    harness.faults.add(Fault("RunInstances", "VcpuLimitExceeded", times=100))
    harness.loop.add(make_request("q-1"))
    harness.loop.max_attempts = 2

    harness.loop.run_until_settled()

    failed = harness.loop.requests["q-1"].failed
    assert failed is not None
    assert "VcpuLimitExceeded" in failed
    assert "quota" in failed
    assert harness.instances() == []


def test_foreign_instances_are_never_listed_or_touched(harness: Harness) -> None:
    ec2 = harness.raw_ec2()
    ami = talos_ami_id("v1.13.9", REGION, "amd64")
    untagged = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]
    foreign_tags = [{"Key": INSTALLATION_KEY, "Value": "someone-else"},
                    {"Key": INSTANCE_KEY, "Value": "aws-test"},
                    {"Key": REQUEST_KEY, "Value": "w-0"},
                    {"Key": "talprov-member-w-0", "Value": ""}]
    foreign = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": foreign_tags}],
    )["Instances"][0]
    harness.loop.add(make_request("w-0"))

    harness.loop.run_until_settled()
    assert {m.infra_id for m in harness.provider.list_machines(harness.loop.owner)} == {
        harness.loop.requests["w-0"].state.infra_id
    }
    harness.loop.delete("w-0")
    harness.loop.run_until_settled()
    # A stale state pointing at a foreign instance does not make it ours either.
    harness.loop.requests["w-0"].state.infra_id = foreign["InstanceId"]
    harness.loop.requests["w-0"].gone = False
    harness.loop.delete("w-0")
    harness.loop.run_until_settled()

    states = {raw["InstanceId"]: raw["State"]["Name"]
              for raw in harness.instances(include_terminated=True)}
    assert states[untagged["InstanceId"]] == "running"
    assert states[foreign["InstanceId"]] == "running"
    terminated = [i for i, s in states.items() if s == "terminated"]
    assert len(terminated) == 1


def test_deprovision_is_idempotent(harness: Harness) -> None:
    for i in range(3):
        harness.loop.add(make_request(f"w-{i}"))
    harness.loop.run_until_settled()

    for rid in list(harness.loop.requests):
        harness.loop.delete(rid)
    harness.loop.run_until_settled()
    assert harness.instances() == []
    assert harness.provider.list_machines(harness.loop.owner) == []
    assert all(t.gone for t in harness.loop.requests.values())

    terminations = harness.counter.calls["TerminateInstances"]
    harness.restart()  # deleting again, with or without state, is still success
    for rid, tracked in harness.loop.requests.items():
        tracked.gone = False
        if rid == "w-0":
            tracked.state = harness.provider.state_model()
        harness.loop.delete(rid)
    harness.loop.run_until_settled()
    assert all(t.gone for t in harness.loop.requests.values())
    assert harness.counter.calls["TerminateInstances"] - terminations <= 2


def test_a_request_id_reused_after_delete_gets_a_new_instance(harness: Harness) -> None:
    harness.loop.add(make_request("again"))
    harness.loop.run_until_settled()
    first = harness.loop.requests["again"].state.infra_id
    harness.loop.delete("again")
    harness.loop.run_until_settled()

    harness.loop.add(make_request("again"))  # a fresh record, as the store makes one
    harness.loop.run_until_settled()

    second = harness.loop.requests["again"].state.infra_id
    assert second is not None
    assert second != first
    live = [raw["InstanceId"] for raw in harness.instances()]
    assert live == [second]

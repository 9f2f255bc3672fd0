"""Two live instances claiming one request (a launch retried after a crash whose
listing lagged): provisioning keeps the adopted one and terminates the rest, and
deprovision terminates every claimant, not only the adopted one."""

from __future__ import annotations

from talprov.providers.ownership import INSTALLATION_KEY, INSTANCE_KEY, REQUEST_KEY
from talprov.providers.protocol import StepContext
from tests.emulators.moto import REGION, talos_ami_id
from tests.unit.aws.helpers import Harness, make_request


def _launch_claiming(harness: Harness, request_id: str) -> str:
    """An instance carrying talprov's tags for ``request_id``, as a retried launch leaves it."""
    tags = [{"Key": INSTALLATION_KEY, "Value": "talprov-test"},
            {"Key": INSTANCE_KEY, "Value": "aws-test"},
            {"Key": REQUEST_KEY, "Value": request_id}, {"Key": "Name", "Value": request_id}]
    reply = harness.raw_ec2().run_instances(
        ImageId=talos_ami_id("v1.13.9", REGION, "amd64"), InstanceType="t3.small",
        MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return str(reply["Instances"][0]["InstanceId"])


def _live(harness: Harness) -> set[str]:
    return {str(raw["InstanceId"]) for raw in harness.instances()
            if raw["State"]["Name"] not in ("shutting-down", "terminated")}


def test_deprovision_terminates_every_instance_claiming_the_request(harness: Harness) -> None:
    tracked = harness.loop.add(make_request("dup"))
    harness.loop.run_until_settled()
    adopted = tracked.state.infra_id
    duplicate = _launch_claiming(harness, "dup")
    assert _live(harness) == {adopted, duplicate}

    harness.loop.delete("dup")
    harness.loop.run_until_settled()

    assert tracked.gone
    assert _live(harness) == set()
    assert harness.provider.list_machines(harness.loop.owner) == []


def test_provisioning_keeps_the_adopted_instance_and_terminates_the_surplus(
    harness: Harness,
) -> None:
    first = _launch_claiming(harness, "dup")
    second = _launch_claiming(harness, "dup")
    other = harness.loop.add(make_request("other"))
    tracked = harness.loop.add(make_request("dup"))

    harness.loop.run_until_settled()

    assert tracked.failed is None
    adopted = tracked.state.infra_id
    assert adopted in (first, second)
    assert _live(harness) == {adopted, other.state.infra_id}
    assert harness.counter.calls["RunInstances"] == 1  # only "other" was launched
    assert any("duplicate" in event for event in tracked.events)


def test_wait_running_terminates_a_duplicate_that_appears_after_adoption(
    harness: Harness,
) -> None:
    tracked = harness.loop.add(make_request("dup"))
    harness.loop.run_until_settled()
    adopted = tracked.state.infra_id
    duplicate = _launch_claiming(harness, "dup")
    listed = [m for m in harness.provider.list_machines(harness.loop.owner)
              if m.request_id == "dup"]
    assert {m.infra_id for m in listed} == {adopted, duplicate}

    wait = harness.provider.steps()[2].run
    for observed in listed:  # whichever of them the pass hands the step
        state = tracked.state.model_copy(deep=True)
        ctx = StepContext(request=tracked.request, data=tracked.data, state=state,
                          owner=harness.loop.owner, runtime=harness.runtime,
                          observed=observed, step_started_at=harness.clock())
        wait(ctx)
        assert state.infra_id == adopted

    assert _live(harness) == {adopted}

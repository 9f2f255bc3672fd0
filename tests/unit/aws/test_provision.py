"""Provisioning Talos machines on moto's EC2: the steps, batching, and API call counts."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest

from talprov.aws.members import MEMBERS_PREFIX
from talprov.providers.ownership import INSTALLATION_KEY, INSTANCE_KEY, REQUEST_KEY
from talprov.talos.hostname import with_hostname
from tests.emulators.moto import REGION, talos_ami_id
from tests.unit.aws.helpers import WORKER_CONFIG, Harness, make_request


def _user_data(harness: Harness, instance_id: str) -> str:
    reply = harness.raw_ec2().describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData"
    )
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def _tags(raw: dict[str, object]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}  # type: ignore[attr-defined]


def _by_request(harness: Harness) -> dict[str, dict[str, Any]]:
    """Live instances by request, as the driver's one listing maps them."""
    raw_by_id = {raw["InstanceId"]: raw for raw in harness.instances()}
    listed = harness.provider.list_machines(harness.loop.owner)
    assert len(listed) == len(raw_by_id)
    return {str(m.request_id): raw_by_id[m.infra_id] for m in listed}


def test_five_machines_run_with_their_config_imdsv2_and_tags(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = harness_factory(name_machines=True)
    for i in range(5):
        harness.loop.add(make_request(f"worker-{i}"))

    harness.loop.run_until_settled()

    instances = harness.instances()
    assert len(instances) == 5
    by_request = _by_request(harness)
    assert sorted(by_request) == [f"worker-{i}" for i in range(5)]
    for rid, raw in by_request.items():
        tags = _tags(raw)
        assert raw["State"]["Name"] == "running"
        assert raw["ImageId"] == talos_ami_id("v1.13.9", REGION, "amd64")
        assert raw["InstanceType"] == "t3.small"
        assert raw["MetadataOptions"]["HttpTokens"] == "required"
        assert raw["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        # Named configs differ, so each is launched alone and tagged at launch.
        assert tags[REQUEST_KEY] == rid
        assert tags[INSTALLATION_KEY] == "talprov-test"
        assert tags[INSTANCE_KEY] == "aws-test"
        assert tags["talprov-label-cluster"] == "demo"
        # Named after its request, as Talos v1.13 honours it (a HostnameConfig document).
        assert _user_data(harness, raw["InstanceId"]) == with_hostname(
            WORKER_CONFIG, rid, "v1.13.9")
        assert f"hostname: {rid}" in _user_data(harness, raw["InstanceId"])
        assert harness.loop.requests[rid].state.infra_id == raw["InstanceId"]
    for tracked in harness.loop.requests.values():
        assert tracked.failed is None
        assert tracked.state.addresses  # recorded from the listing once running


def test_identical_configs_launch_in_one_call_and_run_in_one_pass(harness: Harness) -> None:
    count = 120  # more than the 50 tags the old one-key-per-member scheme could carry
    for i in range(count):
        harness.loop.add(make_request(f"w-{i:03d}"))

    passes = harness.loop.run_until_settled()

    calls = harness.counter.calls
    assert passes == 1  # looked at again right after the launch: no 5 s wait
    # The pass's listing, the AMI, one launch, one look at the new instances.
    assert dict(calls) == {"DescribeInstances": 2, "DescribeImages": 1, "RunInstances": 1}
    launched = [r for r in harness.instances()
                if any(k.startswith(MEMBERS_PREFIX) for k in _tags(r))]
    assert sorted(r["AmiLaunchIndex"] for r in launched) == list(range(count))
    assert all(len(_tags(r)) <= 50 for r in launched)
    # The call is named on every instance by EC2 itself (its ClientToken and
    # reservation): no tag of talprov's repeats it.
    assert len({r["ClientToken"] for r in launched}) == 1
    assert not any("talprov-batch" in _tags(r) for r in launched)
    by_request = _by_request(harness)
    for rid, tracked in harness.loop.requests.items():
        assert by_request[rid]["InstanceId"] == tracked.state.infra_id


def test_distinct_configs_get_one_call_each(harness: Harness) -> None:
    for i in range(3):
        harness.loop.add(make_request(f"cp-{i}", config=WORKER_CONFIG + f"# node {i}\n"))

    harness.loop.run_until_settled()

    assert harness.counter.calls["RunInstances"] == 3
    assert harness.counter.calls.get("CreateTags", 0) == 0  # tagged at launch
    for raw in harness.instances():
        rid = _tags(raw)[REQUEST_KEY]
        assert _tags(raw)["Name"] == rid
        # Not named by default on EC2: Talos takes the hostname from the instance metadata.
        assert _user_data(harness, raw["InstanceId"]) == WORKER_CONFIG + f"# node {rid[-1]}\n"


def test_batches_respect_max_batch(harness_factory: object) -> None:
    harness = harness_factory(max_batch=4, name_machines=False)  # type: ignore[operator]
    for i in range(10):
        harness.loop.add(make_request(f"w-{i}"))

    harness.loop.run_until_settled()

    assert harness.counter.calls["RunInstances"] == 3  # 4 + 4 + 2
    assert len(harness.instances()) == 10


def test_shapes_split_batches(harness_factory: Callable[..., Harness]) -> None:
    harness = harness_factory(name_machines=False)
    harness.loop.add(make_request("a-1"))
    harness.loop.add(make_request("a-2"))
    harness.loop.add(make_request("b-1", provider_data={"instance_type": "m5.large"}))
    harness.loop.add(make_request("b-2", provider_data={"instance_type": "m5.large",
                                                        "root_volume": {"size": 40}}))

    harness.loop.run_until_settled()

    types = {rid: r["InstanceType"] for rid, r in _by_request(harness).items()}
    assert types == {"a-1": "t3.small", "a-2": "t3.small", "b-1": "m5.large", "b-2": "m5.large"}
    assert harness.counter.calls["RunInstances"] == 3


def test_cpu_and_memory_choose_the_smallest_type_once(harness: Harness) -> None:
    for i in range(3):
        harness.loop.add(make_request(f"s-{i}", provider_data={"cpu": 2, "memory": 8192}))
    harness.loop.add(make_request("arm", arch="arm64", provider_data={"cpu": 2, "memory": 4096}))

    harness.loop.run_until_settled()

    types = {rid: r["InstanceType"] for rid, r in _by_request(harness).items()}
    amd = harness.raw_ec2().describe_instance_types(InstanceTypes=[types["s-0"]])
    info = amd["InstanceTypes"][0]
    assert info["VCpuInfo"]["DefaultVCpus"] == 2
    assert info["MemoryInfo"]["SizeInMiB"] == 8192
    assert "x86_64" in info["ProcessorInfo"]["SupportedArchitectures"]
    assert types["s-0"] == types["s-1"] == types["s-2"]
    arm = harness.raw_ec2().describe_instance_types(InstanceTypes=[types["arm"]])
    assert "arm64" in arm["InstanceTypes"][0]["ProcessorInfo"]["SupportedArchitectures"]
    # One listing per distinct size, not per request.
    assert harness.counter.calls["DescribeInstanceTypes"] <= 2


def test_volume_spot_and_tags_reach_the_instance(harness: Harness) -> None:
    ec2 = harness.raw_ec2()
    harness.loop.add(make_request("spot-1", provider_data={
        "instance_type": "m5.large",
        "root_volume": {"size": 30, "type": "gp3", "encrypted": True},
        "spot": {"enabled": True, "max_price": "0.05"},
        "tags": {"team": "platform"},
    }))

    harness.loop.run_until_settled()

    (raw,) = harness.instances()
    assert _tags(raw)["team"] == "platform"
    assert raw.get("InstanceLifecycle") == "spot"
    volume_id = raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Size"] == 30
    assert _tags(volume)[REQUEST_KEY] == "spot-1"


def test_oversized_machine_config_fails_naming_the_field(harness: Harness) -> None:
    harness.loop.add(make_request("big", config="x" * (17 * 1024)))
    harness.loop.add(make_request("ok"))

    harness.loop.run_until_settled()

    assert harness.loop.requests["big"].failed is not None
    assert "machine_config" in harness.loop.requests["big"].failed
    assert harness.loop.requests["ok"].failed is None
    assert len(harness.instances()) == 1


def test_unknown_talos_version_fails_naming_the_field(harness: Harness) -> None:
    harness.loop.add(make_request("old", version="v1.9.99"))

    harness.loop.run_until_settled()

    failed = harness.loop.requests["old"].failed
    assert failed is not None
    assert "talos_version" in failed
    assert "talos-v1.9.99-us-east-1-amd64" in failed


def test_machine_config_never_appears_in_events_or_errors(harness: Harness) -> None:
    harness.loop.add(make_request("w-1"))
    harness.loop.add(make_request("big", config=WORKER_CONFIG + "x" * (17 * 1024)))

    harness.loop.run_until_settled()

    text = repr(harness.provider) + repr(harness.loop.requests)
    for tracked in harness.loop.requests.values():
        text += " ".join(tracked.events) + str(tracked.failed) + repr(tracked.state)
    assert "canary-token-5f1e0c" not in text


def test_debug_logging_never_shows_user_data(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Explicitly: the CLI's logging setup (run by earlier tests in this process)
    # holds SDK loggers at INFO, which would hide what this test looks at.
    caplog.set_level(logging.DEBUG, logger="botocore")
    harness.loop.add(make_request("w-0"))
    harness.loop.add(make_request("w-1", config=WORKER_CONFIG + "# other\n"))

    harness.loop.run_until_settled()

    assert len(harness.instances()) == 2
    assert "Making request for" in caplog.text  # botocore did log at DEBUG
    encoded = base64.b64encode(WORKER_CONFIG.encode()).decode()
    assert "canary-token-5f1e0c" not in caplog.text
    assert encoded[:40] not in caplog.text

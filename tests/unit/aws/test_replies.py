"""Instance replies parsed leanly hold exactly what botocore's full parse holds of the
members talprov reads, and talprov's driver makes the same machines of both.

The replies are moto's (instances launched in a batch, alone, as spot, stopped,
terminated, with IPv6) and botocore's own test vector
``tests/unit/response_parsing/xml/responses/ec2-describe-instances.xml``
(boto/botocore, Apache-2.0), an EC2 reply of the 2014 API in testdata/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.parsers import EC2QueryParser

from talprov.aws.client import _shared_loader, parse_timestamp
from talprov.aws.instances import machine_from_instance
from talprov.aws.members import member_tags
from talprov.aws.replies import INSTANCE_MEMBERS, KEPT, LeanParsers
from tests.emulators.moto import REGION, MotoServer, talos_ami_id
from tests.unit.aws.helpers import Harness

TESTDATA = Path(__file__).parent / "testdata"
AWS_SOURCES = Path(__file__).parents[3] / "talprov" / "aws"
#: The nested structures under an instance, by the member that holds them.
NESTED = {"NetworkInterfaces": "InstanceNetworkInterface", "Placement": "Placement",
          "PrivateIpAddresses": "InstancePrivateIpAddress"}


def _kept(value: Any, shape: str) -> Any:
    """``value`` (a full parse of a ``shape``) with only the members the lean shapes keep."""
    if isinstance(value, list):
        return [_kept(item, shape) for item in value]
    members = KEPT.get(shape)
    out = {}
    for key, item in value.items():
        if members is not None and key not in members:
            continue
        out[key] = _kept(item, NESTED[key]) if key in NESTED else item
    return out


def _output_shape(operation: str) -> Any:
    """``operation``'s reply shape in botocore's newest EC2 model."""
    model = botocore.session.get_session().get_service_model("ec2")
    return model.operation_model(operation).output_shape


def _full_parse(body: bytes, operation: str) -> Any:
    shape = _output_shape(operation)
    parser = EC2QueryParser(timestamp_parser=parse_timestamp)
    return parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)


def _lean_parse(body: bytes, operation: str) -> Any:
    factory = LeanParsers(_shared_loader())
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
    shape = _output_shape(operation)
    return factory.create_parser("ec2").parse(
        {"body": body, "headers": {}, "status_code": 200}, shape)


def _instances(reply: dict[str, Any]) -> list[dict[str, Any]]:
    if "Reservations" in reply:
        return [i for r in reply["Reservations"] for i in r["Instances"]]
    return list(reply["Instances"])


def _compare(body: bytes, operation: str) -> list[dict[str, Any]]:
    """Both parses of ``body``: the lean one is the full one cut down; same machines."""
    full, lean = _instances(_full_parse(body, operation)), _instances(_lean_parse(body, operation))
    assert len(lean) == len(full) > 0
    for lean_one, full_one in zip(lean, full, strict=True):
        assert lean_one == _kept(full_one, "Instance")
        assert set(lean_one) <= INSTANCE_MEMBERS
        assert machine_from_instance(lean_one) == machine_from_instance(full_one)
    return full


class _Bodies:
    """The raw bodies of a client's replies, by operation."""

    def __init__(self, client: Any) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        client.meta.events.register("after-call.ec2", self._keep)

    def _keep(self, http_response: Any, model: Any, **_: Any) -> None:
        self.bodies.setdefault(model.name, []).append(http_response.content)


def test_botocores_describe_instances_vector() -> None:
    full = _compare((TESTDATA / "ec2-describe-instances.xml").read_bytes(), "DescribeInstances")
    assert {i["State"]["Name"] for i in full} == {"stopped", "running"}
    assert any(i.get("PublicIpAddress") for i in full)
    assert any(i.get("StateReason") for i in full)


def test_moto_replies_of_every_kind(moto_server: MotoServer) -> None:
    ec2: Any = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server.url)
    bodies = _Bodies(ec2)
    ami = talos_ami_id("v1.13.9", REGION, "amd64")
    owner = [{"Key": "talprov-installation", "Value": "t"},
             {"Key": "talprov-instance", "Value": "i"}]
    batch = ec2.run_instances(
        ImageId=ami, InstanceType="t3.small", MinCount=3, MaxCount=3,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [*owner, *member_tags(["w-1", "w-2", "w-3"])]}])
    ec2.run_instances(ImageId=ami, InstanceType="t3.small", MinCount=1, MaxCount=1,
                      InstanceMarketOptions={"MarketType": "spot"},
                      TagSpecifications=[{"ResourceType": "instance", "Tags": owner}])
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    block = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0][
        "Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.9.1.0/24",
                               Ipv6CidrBlock=block.replace("/56", "/64"))["Subnet"]
    ec2.run_instances(ImageId=ami, InstanceType="t3.small", MinCount=1, MaxCount=1,
                      SubnetId=subnet["SubnetId"], Ipv6AddressCount=1)
    ids = [i["InstanceId"] for i in batch["Instances"]]
    ec2.stop_instances(InstanceIds=ids[:1])
    ec2.terminate_instances(InstanceIds=ids[1:2])
    ec2.describe_instances()

    for body in bodies.bodies["RunInstances"]:
        _compare(body, "RunInstances")
    (listing,) = bodies.bodies["DescribeInstances"]
    full = _compare(listing, "DescribeInstances")
    # Every member the driver reads is there to be compared somewhere.
    assert {i["State"]["Name"] for i in full} >= {"running", "stopped", "terminated"}
    assert any(i.get("InstanceLifecycle") == "spot" for i in full)
    assert any(i.get("StateReason") for i in full)
    assert any(a for i in full for n in i["NetworkInterfaces"] for a in n["Ipv6Addresses"])
    assert any(i.get("PublicIpAddress") for i in full)
    assert any(machine_from_instance(i).request_id == "w-2" for i in full)


def test_the_drivers_client_parses_leanly(harness: Harness) -> None:
    ec2: Any = harness.provider.clients.ec2
    reply = ec2.run_instances(ImageId=talos_ami_id("v1.13.9", REGION, "amd64"),
                              InstanceType="t3.small", MinCount=1, MaxCount=1)
    (instance,) = reply["Instances"]
    assert set(instance) <= INSTANCE_MEMBERS
    assert "BlockDeviceMappings" not in instance  # in every full parse of moto's reply
    listed = _instances(ec2.describe_instances())
    assert [set(i) <= INSTANCE_MEMBERS for i in listed] == [True]


def test_every_instance_member_the_driver_reads_is_kept() -> None:
    # A member read but cut off would silently read as missing: catch it here.
    read = set()
    for name in ("instances.py", "provider.py", "launching.py"):  # where instances are read
        text = (AWS_SOURCES / name).read_text()
        read |= set(re.findall(r'\braw(?:\.get\(|\[)"([A-Za-z0-9]+)"', text))
    assert read, "no reads of instance members found: the pattern is out of date"
    assert read <= INSTANCE_MEMBERS, sorted(read - INSTANCE_MEMBERS)

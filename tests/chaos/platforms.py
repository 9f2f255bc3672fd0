"""The emulated platforms of the chaos suite, each behind a :class:`FaultProxy`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3

from talprov.aws.instances import tags_of
from talprov.aws.members import request_of
from talprov.openstack.servers import tag
from talprov.providers.ownership import REQUEST_KEY
from tests.chaos.proxy import EC2, OPENSTACK, Ec2ClientTokens, FaultProxy
from tests.chaos.rounds import Platform
from tests.emulators.moto import REGION, MotoServer, aws_instance_block
from tests.emulators.openstack import FakeOpenStack


@contextmanager
def aws_platform(moto: MotoServer, seed: int) -> Iterator[Platform]:
    """moto behind the proxy, with EC2's ClientToken idempotency added."""
    proxy = FaultProxy(moto.url, EC2, seed, client_tokens=Ec2ClientTokens(),
                       exempt=lambda _m, path: path.startswith("/moto-api")).start()
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto.url)

    def resources_of(request_id: str) -> dict[str, int]:
        # Instances map to requests as the driver maps them (a request tag, or a
        # batch's packed member list and the launch index): the one rule.
        instances = [
            i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")
            and request_of(tags_of(i), int(i.get("AmiLaunchIndex", 0))) == request_id]
        attached = {i["InstanceId"] for i in instances}
        volumes = [
            v for v in ec2.describe_volumes()["Volumes"]
            if v["State"] not in ("deleted", "deleting")
            and (tags_of(v).get(REQUEST_KEY) == request_id
                 or any(a.get("InstanceId") in attached for a in v.get("Attachments", [])))]
        return {"machines": len(instances), "volumes": len(volumes)}

    try:
        yield Platform("aws", proxy, aws_instance_block(moto, endpoint_url=proxy.url),
                       {"instance_type": "t3.small"}, resources_of)
    finally:
        proxy.stop()


@contextmanager
def openstack_platform(seed: int) -> Iterator[Platform]:
    """The OpenStack fake behind the proxy; requests take a floating IP too."""
    cloud = FakeOpenStack().start()
    proxy = FaultProxy(cloud.url, OPENSTACK, seed).start()
    auth = {**cloud.auth(), "auth_url": cloud.auth_url.replace(cloud.url, proxy.url)}

    def resources_of(request_id: str) -> dict[str, int]:
        mark = tag(REQUEST_KEY, request_id)
        servers = [s for s in cloud.servers() if mark in s.tags]
        return {"machines": len(servers),
                "ports": sum(1 for p in cloud.ports() if mark in p.tags),
                "floating_ips": sum(1 for f in cloud.floating_ips() if mark in f.tags)}

    try:
        yield Platform("openstack", proxy,
                       {"type": "openstack", "auth": auth, "region": "RegionOne",
                        "poll_interval": 0.5},
                       {"flavor": "m1.small", "networks": ["private"],
                        "floating_ip_pool": "public"}, resources_of)
    finally:
        proxy.stop()
        cloud.stop()

"""A duplicate instance that shows up only after its request is provisioned.

A launch retried after a crash while EC2's listing still lagged behind the first
can leave a second instance claiming a request; ensure-instance and
wait-running terminate the ones they see, but one that EC2 lists only after the
request is provisioned would run (and cost) until the request is deleted. The
reconciler finds it in its listing and has it terminated
(``RemovesSecondMachines``), keeping the instance the request's record names.

Batch-launched instances carry their call's whole member list; each belongs to
one member only (the one at its launch index): an instance is never terminated
as a second instance of a request it merely lists, least of all while it is
another request's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talprov.aws.config import AwsConfig
from talprov.aws.members import member_tags
from talprov.aws.provider import AwsProvider
from talprov.providers.ownership import INSTALLATION_KEY, INSTANCE_KEY, REQUEST_KEY
from talprov.providers.protocol import RemovesSecondMachines, Runtime
from talprov.providers.types import Machine, MachineState, Owner, Stage
from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.moto import REGION, MotoServer, talos_ami_id
from tests.reconciling import events_saying, provisioned, reconciler_of, recorded, sqlite_store
from tests.unit.aws.helpers import make_request

INSTALLATION = "talprov-second"
OWNER = Owner(INSTALLATION, "aws-test")


@pytest.fixture
def provider(moto_server: MotoServer, tmp_path: Path) -> AwsProvider:
    clock = FakeClock()
    runtime = Runtime(installation=INSTALLATION, cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    # Unnamed machines: identical configs share one batched launch.
    return AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=moto_server.url,
                                             max_attempts=1, name_machines=False), runtime)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from sqlite_store(tmp_path)


@pytest.fixture
def reconciler(store: Store, provider: AwsProvider) -> Reconciler:
    return reconciler_of(store, "aws-test", provider, max_attempts=3)


def _launch(provider: AwsProvider, members: list[str], *, owner: Owner = OWNER) -> list[str]:
    """Instances carrying talprov's tags for ``members`` (one: its request tag; more:
    their member list), as a launch retried after a crash leaves them; by launch index."""
    tags = [{"Key": INSTALLATION_KEY, "Value": owner.installation},
            {"Key": INSTANCE_KEY, "Value": owner.instance}]
    if len(members) == 1:
        tags += [{"Key": REQUEST_KEY, "Value": members[0]}, {"Key": "Name", "Value": members[0]}]
    else:
        tags += member_tags(sorted(members))
    ec2: Any = provider.clients.ec2  # (tags built as plain dicts)
    reply = ec2.run_instances(
        ImageId=talos_ami_id("v1.13.9", REGION, "amd64"), InstanceType="t3.small",
        MinCount=len(members), MaxCount=len(members),
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    instances = sorted(reply["Instances"], key=lambda raw: raw["AmiLaunchIndex"])
    return [str(raw["InstanceId"]) for raw in instances]


def _live(provider: AwsProvider) -> set[str]:
    ec2 = provider.clients.ec2
    return {str(raw["InstanceId"]) for page in ec2.get_paginator("describe_instances").paginate()
            for reservation in page["Reservations"] for raw in reservation["Instances"]
            if raw["State"]["Name"] not in ("shutting-down", "terminated")}


def _second_events(store: Store, rid: str) -> list[str]:
    return events_saying(store, rid, "second instance")


def test_a_duplicate_listed_only_after_the_request_is_provisioned_is_terminated(
    provider: AwsProvider, store: Store, reconciler: Reconciler,
) -> None:
    store.create_request(make_request("late"))
    assert reconciler.run_until(provisioned(store, "late"), timeout=600)
    kept = recorded(store, "late")
    (duplicate,) = _launch(provider, ["late"])
    assert _live(provider) == {kept, duplicate}

    assert reconciler.run_pass().second_machines == 1

    assert _live(provider) == {kept}
    assert recorded(store, "late") == kept
    assert len(_second_events(store, "late")) == 1
    assert reconciler.run_pass().second_machines == 0
    assert _live(provider) == {kept}
    assert store.get_request("late").stage == Stage.PROVISIONED  # type: ignore[union-attr]


def test_a_duplicate_batch_loses_each_instance_of_a_held_request_and_no_other(
    provider: AwsProvider, store: Store, reconciler: Reconciler,
) -> None:
    for rid in ("b-1", "b-2"):
        store.create_request(make_request(rid))
    assert reconciler.run_until(provisioned(store, "b-1", "b-2"), timeout=600)
    kept = {recorded(store, "b-1"), recorded(store, "b-2")}
    # The same batch launched again, and a batch of b-1 with a request this store
    # does not hold (another worker's, or one forgotten): only b-1's member of it goes.
    again = _launch(provider, ["b-1", "b-2"])
    b1_second, unheld = _launch(provider, ["b-1", "z-9"])
    assert _live(provider) == {*kept, *again, b1_second, unheld}

    assert reconciler.run_pass().second_machines == 3

    assert _live(provider) == {*kept, unheld}
    assert {recorded(store, "b-1"), recorded(store, "b-2")} == kept
    assert len(_second_events(store, "b-1")) == 2
    assert len(_second_events(store, "b-2")) == 1


def test_a_batch_member_kept_by_one_request_is_never_a_second_instance_of_another(
    provider: AwsProvider, store: Store, reconciler: Reconciler,
) -> None:
    # m-1 is provisioned with its own instance. Then a batch carrying m-1 and m-2
    # appears (a retried launch): m-2 adopts its member, m-1's member is a second
    # instance of m-1. The instance m-2 keeps lists m-1 too, and stays.
    store.create_request(make_request("m-1"))
    assert reconciler.run_until(provisioned(store, "m-1"), timeout=600)
    m1 = recorded(store, "m-1")
    m1_second, m2_own = _launch(provider, ["m-1", "m-2"])
    store.create_request(make_request("m-2"))
    assert reconciler.run_until(provisioned(store, "m-2"), timeout=600)
    assert recorded(store, "m-2") == m2_own
    assert _live(provider) == {m1, m1_second, m2_own}

    assert reconciler.run_pass().second_machines == 1

    assert _live(provider) == {m1, m2_own}
    assert recorded(store, "m-1") == m1
    assert len(_second_events(store, "m-1")) == 1
    assert not _second_events(store, "m-2")
    # Asked directly with the batch mates taken for each other's, the driver reads
    # them again and refuses: each belongs to the member at its launch index only.
    assert provider.remove_second_machine(
        OWNER, Machine(infra_id=m2_own, state=MachineState.RUNNING, request_id="m-1"),
        m1) is None
    assert _live(provider) == {m1, m2_own}


@pytest.mark.parametrize("case", ["kept gone", "kept another request's",
                                  "kept another owner's", "second another owner's",
                                  "second gone"])
def test_a_second_instance_is_terminated_only_beside_a_live_kept_instance_of_the_request(
    provider: AwsProvider, case: str,
) -> None:
    # The listing that showed both may be minutes old: the request must keep one.
    elsewhere = Owner("another-installation", OWNER.instance)
    (kept,) = _launch(provider, ["r-2"] if case == "kept another request's" else ["r-1"],
                      owner=elsewhere if case == "kept another owner's" else OWNER)
    (second,) = _launch(provider, ["r-1"],
                        owner=elsewhere if case == "second another owner's" else OWNER)
    if case == "kept gone":
        provider.clients.ec2.terminate_instances(InstanceIds=[kept])
    if case == "second gone":
        provider.clients.ec2.terminate_instances(InstanceIds=[second])
    asked = Machine(infra_id=second, state=MachineState.RUNNING, request_id="r-1")

    assert provider.remove_second_machine(OWNER, asked, kept) is None

    assert second in _live(provider) or case == "second gone"


def test_a_live_second_instance_beside_the_requests_own_is_terminated_once(
    provider: AwsProvider,
) -> None:
    assert isinstance(provider, RemovesSecondMachines)
    (kept,) = _launch(provider, ["r-1"])
    (second,) = _launch(provider, ["r-1"])
    asked = Machine(infra_id=second, state=MachineState.RUNNING, request_id="r-1")

    line = provider.remove_second_machine(OWNER, asked, kept)

    assert line is not None
    assert second in line
    assert _live(provider) == {kept}
    assert provider.remove_second_machine(OWNER, asked, kept) is None  # gone: success
    assert _live(provider) == {kept}

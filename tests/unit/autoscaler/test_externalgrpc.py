"""The Cluster Autoscaler's calls, made with a client generated from the upstream
externalgrpc.proto, against talprov's server on real machine sets on moto."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from talprov.autoscaler.groups import GroupError, NodeGroups, NodeRef
from talprov.providers.types import Stage
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import ClusterState
from tests.emulators.moto import Fault, MotoServer
from tests.unit.autoscaler.certs import Authority
from tests.unit.autoscaler.upstream import Upstream
from tests.unit.autoscaler.world import client, make_pki, make_world, served

GROUP = "demo/workers"


def test_the_autoscaler_scenario_on_moto(moto_server: MotoServer, tmp_path: Path,
                                         upstream: Upstream) -> None:
    world = make_world(moto_server, tmp_path)
    pb = upstream.pb2
    pki = make_pki(tmp_path)
    assert world.settle(lambda: world.scaler.converged("demo"))
    with served(world.groups, pki.server_tls) as port:
        stub, channel = client(upstream, port, root=pki.ca.pem.cert, cert=pki.client_cert,
                               key=pki.client_key)
        with channel:
            groups = stub.NodeGroups(pb.NodeGroupsRequest()).nodeGroups
            assert [(g.id, g.minSize, g.maxSize) for g in groups] == [(GROUP, 1, 6)]
            assert stub.NodeGroupTargetSize(pb.NodeGroupTargetSizeRequest(id=GROUP)).targetSize == 2

            # The template node, decoded with the real k8s v1.Node.
            template = stub.NodeGroupTemplateNodeInfo(
                pb.NodeGroupTemplateNodeInfoRequest(id=GROUP))
            node = upstream.node(template.nodeBytes)
            assert node.status.capacity["cpu"].string == "2"  # t3.small per EC2
            assert node.status.capacity["memory"].string == "2048Mi"
            assert node.metadata.labels["pool"] == "general"
            assert node.metadata.labels["kubernetes.io/arch"] == "amd64"
            assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
                ("dedicated", "batch", "NoSchedule")]
            assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]

            options = stub.NodeGroupGetOptions(pb.NodeGroupAutoscalingOptionsRequest(
                id=GROUP, defaults=pb.NodeGroupAutoscalingOptions(
                    scaleDownUtilizationThreshold=0.5))).nodeGroupAutoscalingOptions
            assert options.scaleDownUtilizationThreshold == 0.5  # the default echoed
            assert options.scaleDownUnneededDuration.seconds == 300  # the set's override

            stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id=GROUP, delta=3))
            assert stub.NodeGroupTargetSize(pb.NodeGroupTargetSizeRequest(id=GROUP)).targetSize == 5
            # The scaler records three creates; no reconcile pass yet (on moto one
            # pass would already see them running).
            world.scaler.run_pass("demo")
            states = [i.status.instanceState for i in stub.NodeGroupNodes(
                pb.NodeGroupNodesRequest(id=GROUP)).instances]
            creating = pb.InstanceStatus.instanceCreating
            running = pb.InstanceStatus.instanceRunning
            assert sorted(states) == sorted([running] * 2 + [creating] * 3)
            assert world.settle(lambda: world.scaler.converged("demo"))
            stub.Refresh(pb.RefreshRequest())
            instances = stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP)).instances
            assert [i.status.instanceState for i in instances] == [running] * 5
            records = {r.infra_id: r for r in world.store.list_requests()}
            for instance in instances:
                zone, infra = instance.id.removeprefix("aws:///").split("/")
                assert zone.startswith("us-")
                assert infra in records

            # Nodes map back by providerID and by name (= the machine's hostname).
            first = instances[0].id
            found = stub.NodeGroupForNode(pb.NodeGroupForNodeRequest(
                node=pb.ExternalGrpcNode(providerID=first, name="ip-10-0-0-1")))
            assert found.nodeGroup.id == GROUP
            some_record = next(iter(records.values()))
            by_name = stub.NodeGroupForNode(pb.NodeGroupForNodeRequest(
                node=pb.ExternalGrpcNode(name=some_record.id)))
            assert by_name.nodeGroup.id == GROUP
            stranger = stub.NodeGroupForNode(pb.NodeGroupForNodeRequest(
                node=pb.ExternalGrpcNode(providerID="aws:///us-east-1a/i-0000000000", name="x")))
            assert stranger.nodeGroup.id == ""

            # Beyond max: refused, naming it; nothing changes.
            with pytest.raises(grpc.RpcError) as refused:
                stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id=GROUP, delta=2))
            assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "max (6)" in str(refused.value.details())

            # Delete exactly two nodes.
            doomed = [instances[1].id, instances[3].id]
            stub.NodeGroupDeleteNodes(pb.NodeGroupDeleteNodesRequest(
                id=GROUP, nodes=[pb.ExternalGrpcNode(providerID=p) for p in doomed]))
            assert stub.NodeGroupTargetSize(pb.NodeGroupTargetSizeRequest(id=GROUP)).targetSize == 3
            deleting = pb.InstanceStatus.instanceDeleting
            now = {i.id: i.status.instanceState for i in stub.NodeGroupNodes(
                pb.NodeGroupNodesRequest(id=GROUP)).instances}
            assert {p for p, s in now.items() if s == deleting} == set(doomed)
            assert world.settle(lambda: world.scaler.converged("demo"))
            left = {i.id for i in stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP)).instances}
            assert left == {i.id for i in instances} - set(doomed)

            # Below min: refused, naming it.
            with pytest.raises(grpc.RpcError) as below:
                stub.NodeGroupDeleteNodes(pb.NodeGroupDeleteNodesRequest(
                    id=GROUP, nodes=[pb.ExternalGrpcNode(providerID=p) for p in left]))
            assert below.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "min (1)" in str(below.value.details())

            # A capacity error surfaces as the out-of-resources class (1).
            world.faults.add(Fault("RunInstances", "InsufficientInstanceCapacity", times=50,
                                   status=500))
            stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id=GROUP, delta=1))
            world.loop.run_round()
            world.loop.run_round()
            errors = [i.status.errorInfo for i in stub.NodeGroupNodes(
                pb.NodeGroupNodesRequest(id=GROUP)).instances if i.status.errorInfo.errorCode]
            assert [(e.instanceErrorClass, e.errorCode) for e in errors] == [
                (1, "OUT_OF_CAPACITY")]
            assert "InsufficientInstanceCapacity" in errors[0].errorMessage
            # The autoscaler then deletes the errored instance by the id it was given
            # (a placeholder: the machine never got an instance id) and backs off.
            errored = [i.id for i in stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP))
                       .instances if i.status.errorInfo.errorCode]
            assert [e.split("://")[0] for e in errored] == ["talprov"]
            stub.NodeGroupDeleteNodes(pb.NodeGroupDeleteNodesRequest(
                id=GROUP, nodes=[pb.ExternalGrpcNode(providerID=errored[0])]))
            assert stub.NodeGroupTargetSize(pb.NodeGroupTargetSizeRequest(id=GROUP)).targetSize == 3
            assert world.settle(lambda: world.scaler.converged("demo"))
            final = stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP)).instances
            assert {i.id for i in final} == left

            with pytest.raises(grpc.RpcError) as unpriced:
                stub.PricingNodePrice(pb.PricingNodePriceRequest())
            assert unpriced.value.code() == grpc.StatusCode.UNIMPLEMENTED
            # No set declares GPUs: the empty label, not one no node carries.
            assert stub.GPULabel(pb.GPULabelRequest()).label == ""
            assert dict(stub.GetAvailableGPUTypes(pb.GetAvailableGPUTypesRequest())
                        .gpuTypes) == {}


def test_decrease_target_drops_only_unprovisioned_machines(
        moto_server: MotoServer, tmp_path: Path) -> None:
    world = make_world(moto_server, tmp_path)
    assert world.settle(lambda: world.scaler.converged("demo"))
    world.groups.increase(GROUP, 2)
    world.scaler.run_pass("demo")  # two creates recorded, none provisioned yet
    assert world.groups.decrease_target(GROUP, -2) == 2
    with pytest.raises(GroupError, match="below its 2 provisioned"):
        world.groups.decrease_target(GROUP, -1)
    assert world.settle(lambda: world.scaler.converged("demo"))
    live = [r for r in world.store.list_requests() if r.stage == Stage.PROVISIONED]
    assert len(live) == 2


class SlowReads(Scaler):
    """Reads the recorded spec slowly, so concurrent calls overlap read and write."""

    def state(self, name: str) -> ClusterState | None:
        found = super().state(name)
        time.sleep(0.03)
        return found


def test_concurrent_increases_are_all_kept(moto_server: MotoServer, tmp_path: Path) -> None:
    world = make_world(moto_server, tmp_path, high=20)
    slow = SlowReads(world.store, world.scaler.handles, world.scaler.runtime)
    world.groups = NodeGroups(slow)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def grow() -> None:
        barrier.wait()
        try:
            world.groups.increase(GROUP, 1)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=grow) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert world.groups.target_size(GROUP) == 6


def test_mtls_refuses_a_client_without_a_certificate_or_from_another_ca(
        moto_server: MotoServer, tmp_path: Path, upstream: Upstream) -> None:
    world = make_world(moto_server, tmp_path)
    pki = make_pki(tmp_path)
    stranger = Authority("another-ca").issue("intruder", server=False)
    pb = upstream.pb2
    with served(world.groups, pki.server_tls) as port:
        for cert, key in ((None, None), (stranger.cert, stranger.key)):
            stub, channel = client(upstream, port, root=pki.ca.pem.cert, cert=cert, key=key)
            with channel, pytest.raises(grpc.RpcError) as refused:
                stub.NodeGroups(pb.NodeGroupsRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        stub, channel = client(upstream, port, root=pki.ca.pem.cert, cert=pki.client_cert,
                               key=pki.client_key)
        with channel:
            assert len(stub.NodeGroups(pb.NodeGroupsRequest(), timeout=10).nodeGroups) == 1


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("VcpuLimitExceeded", 400, (1, "QUOTA_EXCEEDED")),
    ("InsufficientInstanceCapacity", 500, (1, "OUT_OF_CAPACITY")),
    ("InvalidParameterValue", 400, (99, "FAILED")),
])
def test_failed_machines_carry_the_autoscalers_error_class(
        moto_server: MotoServer, tmp_path: Path, code: str, status: int,
        expected: tuple[int, str]) -> None:
    world = make_world(moto_server, tmp_path)
    assert world.settle(lambda: world.scaler.converged("demo"))
    world.faults.add(Fault("RunInstances", code, times=50, status=status))
    world.groups.increase(GROUP, 1)
    world.loop.run_round()
    world.loop.run_round()
    errors = [(v.error_class, v.error_code) for v in world.groups.instances(GROUP)
              if v.error_class is not None]
    assert errors == [expected]


def test_a_cluster_being_destroyed_is_not_resized(moto_server: MotoServer,
                                                  tmp_path: Path) -> None:
    world = make_world(moto_server, tmp_path)
    assert world.scaler.destroy("demo")
    with pytest.raises(GroupError, match="being destroyed") as info:
        world.groups.increase(GROUP, 1)
    assert info.value.code == "FAILED_PRECONDITION"
    state = world.scaler.state("demo")
    assert state is not None
    assert state.destroying
    assert world.groups.groups() == []


def test_node_lookups_use_an_index_that_refresh_and_age_renew(
        moto_server: MotoServer, tmp_path: Path) -> None:
    world = make_world(moto_server, tmp_path)
    now = [100.0]
    groups = NodeGroups(world.scaler, monotonic=lambda: now[0])
    world.loop.run_round()
    known = {r.id for r in world.store.list_requests()}
    assert groups.group_for_node(NodeRef("", min(known))) is not None  # builds the index

    def one_more() -> NodeRef:
        groups.increase(GROUP, 1)
        world.loop.run_round()
        (new,) = {r.id for r in world.store.list_requests()} - known
        known.add(new)
        return NodeRef("", new)

    node = one_more()
    assert groups.group_for_node(node) is None  # not in the index yet
    groups.refresh()
    assert groups.group_for_node(node) is not None
    node = one_more()
    assert groups.group_for_node(node) is None
    now[0] += 6.0  # older than NODE_INDEX_TTL: rebuilt on the next lookup
    assert groups.group_for_node(node) is not None

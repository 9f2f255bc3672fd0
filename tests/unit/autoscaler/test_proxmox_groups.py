"""Node groups on Proxmox (fakepve): providerIDs as the Proxmox CCM sets them, the
template from cores × sockets and memory, and nodes mapped back by name."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import yaml

from talprov.autoscaler.groups import NodeGroups, NodeRef
from talprov.providers.protocol import Provider, Runtime
from talprov.proxmox.provider import ProxmoxProvider
from talprov.reconcile.reconciler import ProviderHandle
from talprov.runloop import RunLoop
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.fakepve import FakePveServer
from tests.emulators.fakepve import fakepve as fakepve  # noqa: PLC0414 - fixture
from tests.unit.autoscaler.upstream import Upstream
from tests.unit.autoscaler.world import client, make_pki, served
from tests.unit.proxmox.conftest import ISO_URL, password_config

GROUP = "lab/workers"
WORKER = "version: v1alpha1\nmachine:\n  type: worker\n  token: canary-1f0e\n"


def test_proxmox_group_ids_template_and_names(fakepve: FakePveServer, tmp_path: Path,
                                              upstream: Upstream) -> None:
    clock = FakeClock()
    runtime = Runtime(installation="talprov-as", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    provider = ProxmoxProvider("pve", password_config(fakepve), runtime,
                               iso_url=lambda request: ISO_URL)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    # ProxmoxProvider narrows the protocol's model types; it is a Provider at runtime.
    handles = {"pve": ProviderHandle(cast(Provider, provider))}
    scaler = Scaler(store, handles, runtime)
    docs = [
        {"kind": "Cluster", "name": "lab", "talos": {"version": "v1.9.1"}},
        {"kind": "MachineClass", "name": "vm", "provider": "pve",
         "provider_data": {"cores": 2, "sockets": 2, "memory": 6144}},
        {"kind": "Workers", "name": "workers", "machineClass": {"name": "vm", "size": 1},
         "config": {"inline": WORKER}, "autoscaling": {"min": 1, "max": 3}},
    ]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump_all(docs))
    scaler.record(load_spec_file(tmp_path / "lab.yaml"))
    groups = NodeGroups(scaler, proxmox_regions={"pve": "cluster-1"})
    loop = RunLoop(store, handles, runtime)
    assert loop.run_until(lambda: scaler.converged("lab"), timeout=900, interval=5.0)
    pki = make_pki(tmp_path)
    pb = upstream.pb2
    with served(groups, pki.server_tls) as port:
        stub, channel = client(upstream, port, root=pki.ca.pem.cert, cert=pki.client_cert,
                               key=pki.client_key)
        with channel:
            listed = stub.NodeGroups(pb.NodeGroupsRequest()).nodeGroups
            assert [(g.id, g.minSize, g.maxSize) for g in listed] == [(GROUP, 1, 3)]
            template = stub.NodeGroupTemplateNodeInfo(
                pb.NodeGroupTemplateNodeInfoRequest(id=GROUP))
            node = upstream.node(template.nodeBytes)
            assert node.status.capacity["cpu"].string == "4"  # cores x sockets
            assert node.status.capacity["memory"].string == "6144Mi"

            stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id=GROUP, delta=2))
            loop.run_round()
            states = sorted(i.status.instanceState for i in stub.NodeGroupNodes(
                pb.NodeGroupNodesRequest(id=GROUP)).instances)
            running = pb.InstanceStatus.instanceRunning
            creating = pb.InstanceStatus.instanceCreating
            # The two new machines are listed at once; fakepve ends tasks as they
            # start, and the driver goes on within the round, so they may already run.
            assert len(states) == 3
            assert set(states) <= {running, creating}
            assert loop.run_until(lambda: scaler.converged("lab"), timeout=900, interval=5.0)

            instances = stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP)).instances
            records = {r.infra_id: r for r in store.list_requests()}
            assert {i.status.instanceState for i in instances} == {running}
            assert sorted(i.id for i in instances) == sorted(
                f"proxmox://cluster-1/{vmid}" for vmid in records)
            assert set(records) <= {str(vm["vmid"]) for vm in fakepve.vms()}
            for infra, record in records.items():
                by_id = stub.NodeGroupForNode(pb.NodeGroupForNodeRequest(node=pb.ExternalGrpcNode(
                    providerID=f"proxmox://cluster-1/{infra}")))
                by_name = stub.NodeGroupForNode(pb.NodeGroupForNodeRequest(
                    node=pb.ExternalGrpcNode(name=record.id)))  # the hostname
                assert by_id.nodeGroup.id == by_name.nodeGroup.id == GROUP
            assert groups.group_for_node(NodeRef("proxmox://other/99999", "nobody")) is None

            doomed = instances[0].id
            stub.NodeGroupDeleteNodes(pb.NodeGroupDeleteNodesRequest(
                id=GROUP, nodes=[pb.ExternalGrpcNode(providerID=doomed)]))
            assert loop.run_until(lambda: scaler.converged("lab"), timeout=900, interval=5.0)
            left = {i.id for i in stub.NodeGroupNodes(pb.NodeGroupNodesRequest(id=GROUP))
                    .instances}
            assert left == {i.id for i in instances} - {doomed}
    assert len(fakepve.vms()) == 2

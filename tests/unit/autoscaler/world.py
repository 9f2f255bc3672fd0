"""A cluster with an autoscaled set on moto, the run loop, and a served CloudProvider."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from talprov.autoscaler.groups import NodeGroups
from talprov.autoscaler.server import AutoscalerServer, TlsFiles
from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle
from talprov.runloop import RunLoop
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.moto import REGION, FaultInjector, MotoServer
from tests.unit.autoscaler.certs import Authority
from tests.unit.autoscaler.upstream import Upstream
from tests.unit.aws.helpers import WORKER_CONFIG


def write_spec(root: Path, *, size: int = 2, low: int = 1, high: int = 6,
               extra: dict[str, Any] | None = None) -> Path:
    autoscaling: dict[str, Any] = {
        "min": low, "max": high, "nodeLabels": {"pool": "general"},
        "nodeTaints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}],
        "options": {"scaleDownUnneededTime": "5m"}, **(extra or {})}
    docs = [
        {"kind": "Cluster", "name": "demo", "talos": {"version": "v1.11.5"}},
        {"kind": "MachineClass", "name": "small", "provider": "aws-test",
         "provider_data": {"instance_type": "t3.small"}},
        {"kind": "Workers", "name": "workers", "machineClass": {"name": "small", "size": size},
         "config": {"inline": WORKER_CONFIG}, "autoscaling": autoscaling},
    ]
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


@dataclass
class World:
    store: Store
    scaler: Scaler
    loop: RunLoop
    groups: NodeGroups
    clock: FakeClock
    faults: FaultInjector
    spec_path: Path

    def settle(self, done: Any, timeout: float = 900) -> bool:
        ok: bool = self.loop.run_until(done, timeout=timeout, interval=5.0)
        return ok


def make_world(server: MotoServer, tmp_path: Path, **spec: Any) -> World:
    clock = FakeClock()
    runtime = Runtime(installation="talprov-as", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    provider = AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=server.url,
                                                 max_attempts=1, poll_interval=2.0), runtime)
    faults = FaultInjector()
    faults.attach(provider.clients.ec2)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    handles = {"aws-test": ProviderHandle(provider)}
    scaler = Scaler(store, handles, runtime)
    path = write_spec(tmp_path, **spec)
    scaler.record(load_spec_file(path))
    loop = RunLoop(store, handles, runtime)
    return World(store, scaler, loop, NodeGroups(scaler), clock, faults, path)


@dataclass
class Pki:
    ca: Authority
    server_tls: TlsFiles
    client_cert: bytes
    client_key: bytes


def make_pki(directory: Path) -> Pki:
    ca = Authority("talprov-test-ca")
    (directory / "ca.crt").write_bytes(ca.pem.cert)
    cert, key = ca.issue("talprov-autoscaler", server=True).write(directory, "server")
    client = ca.issue("cluster-autoscaler", server=False)
    return Pki(ca, TlsFiles(cert=cert, key=key, ca=directory / "ca.crt"),
               client.cert, client.key)


@contextmanager
def served(groups: NodeGroups, tls: TlsFiles | None) -> Iterator[int]:
    server = AutoscalerServer(groups, host="127.0.0.1", port=0, tls=tls,
                              allow_plain=tls is None)
    port = server.start()
    try:
        yield port
    finally:
        server.stop(0)


def client(upstream: Upstream, port: int, *, root: bytes | None,
           cert: bytes | None = None, key: bytes | None = None) -> tuple[Any, grpc.Channel]:
    """An upstream-generated CloudProvider stub over TLS (``root``) or plain."""
    if root is None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                                   certificate_chain=cert)
        channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials)
    return upstream.pb2_grpc.CloudProviderStub(channel), channel

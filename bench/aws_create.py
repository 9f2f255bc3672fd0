"""Create N Talos machines on one moto EC2 server: talprov's AWS driver vs Apache Libcloud.

    python bench/aws_create.py [--machines 100] [--latency-ms 20]

Both sides do the same job against the same moto server (reset in between):
find the Talos AMI, launch N instances with the machine config as user-data and
tags, and wait until all of them run. talprov goes through its real request
reconciler and SQLite store (a fake clock skips the poll waits; moto's
instances are running by the second look). Libcloud's EC2NodeDriver does what
a Libcloud user would: list_images once, create_node per machine, then
wait_until_running. Each configuration runs with no added latency and with a
fixed delay before every API request (a slow or distant endpoint).

Printed per run: wall time, EC2 API requests in total and per machine, and the
libcloud/talprov wall-time ratio. (Libcloud cannot ask for IMDSv2 at launch,
so its instances are not configured quite as securely: its job is lighter.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import libcloud.compute.drivers.ec2 as libcloud_ec2  # noqa: E402
from libcloud.compute.drivers.ec2 import EC2NodeDriver  # noqa: E402

from talprov.aws.config import AwsConfig  # noqa: E402
from talprov.aws.provider import AwsProvider  # noqa: E402
from talprov.providers.protocol import Runtime  # noqa: E402
from talprov.providers.types import MachineRequest, Owner, Stage  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from talprov.testing import FakeClock  # noqa: E402
from tests.emulators.moto import (  # noqa: E402
    OFFICIAL_OWNER,
    REGION,
    CallCounter,
    Latency,
    MotoServer,
    fake_credentials,
    start_moto_server,
)

VERSION = "v1.13.9"
CONFIG = """version: v1alpha1
machine:
  type: worker
  token: bench-token
cluster:
  controlPlane:
    endpoint: https://10.0.0.1:6443
"""


@dataclass
class Result:
    name: str
    seconds: float
    calls: Counter[str]
    running: int

    def per_machine(self, machines: int) -> float:
        return sum(self.calls.values()) / machines


def run_talprov(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """talprov: requests in the store, the reconciler drives the AWS provider."""
    clock = FakeClock()
    runtime = Runtime(installation="bench", cache_dir=work / "cache", clock=clock,
                      sleep=clock.sleep)
    provider = AwsProvider("aws-bench", AwsConfig(region=REGION, endpoint_url=server.url),
                           runtime)
    counter = CallCounter()
    counter.attach(provider.clients.ec2)
    if latency:
        Latency(latency).attach(provider.clients.ec2)
    store = Store(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    reconciler = Reconciler(store, {"aws-bench": ProviderHandle(provider, 8)}, runtime)
    for request in _requests(machines):
        store.create_request(request)

    def provisioned() -> bool:
        return all(r.stage == Stage.PROVISIONED for r in store.list_requests())

    start = time.perf_counter()
    # Passes as often as the driver polls: each pass costs one listing.
    done = reconciler.run_until(provisioned, timeout=3600, interval=provider.config.poll_interval)
    seconds = time.perf_counter() - start
    if not done:
        raise RuntimeError("talprov did not provision every machine")
    running = sum(1 for m in provider.list_machines(Owner("bench", "aws-bench"))
                  if m.state.value == "running")
    counter.calls["DescribeInstances"] -= 1  # the check above is not part of the job
    store.close()
    return Result("talprov", seconds, counter.calls, running)


def run_driver(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """talprov's driver alone, under the tests' minimal runner (state kept in memory)."""
    from talprov.testing import FakeClock as LoopClock
    from tests.unit.aws.loop import LocalLoop

    clock = LoopClock()
    runtime = Runtime(installation="bench", cache_dir=work / "cache", clock=clock,
                      sleep=clock.sleep)
    provider = AwsProvider("aws-bench", AwsConfig(region=REGION, endpoint_url=server.url),
                           runtime)
    counter = CallCounter()
    counter.attach(provider.clients.ec2)
    if latency:
        Latency(latency).attach(provider.clients.ec2)
    loop = LocalLoop(provider, runtime, clock)
    for request in _requests(machines):
        loop.add(request)
    start = time.perf_counter()
    loop.run_until_settled()
    seconds = time.perf_counter() - start
    running = sum(1 for t in loop.requests.values() if t.failed is None and t.state.infra_id)
    return Result("driver", seconds, counter.calls, running)


def _requests(machines: int) -> list[MachineRequest]:
    return [
        MachineRequest.model_validate({
            "id": f"node-{i:03d}", "provider": "aws-bench", "talos_version": VERSION,
            "machine_config": CONFIG, "labels": {"cluster": "bench"},
            "provider_data": {"instance_type": "t3.small"},
        })
        for i in range(machines)
    ]


def _counted(driver: Any, calls: Counter[str], latency: float) -> None:
    original: Callable[..., Any] = driver.connection.request

    def request(action: str, params: dict[str, Any] | None = None, *args: Any,
                **kwargs: Any) -> Any:
        calls[str((params or {}).get("Action", "?"))] += 1
        if latency:
            time.sleep(latency)
        return original(action, params, *args, **kwargs)

    driver.connection.request = request


def run_libcloud(server: MotoServer, machines: int, latency: float) -> Result:
    """Apache Libcloud's EC2 driver doing the same job."""
    host, port = server.url.removeprefix("http://").split(":")
    creds = fake_credentials()
    # moto answers in the EC2 XML namespace without the trailing slash real EC2
    # sends; Libcloud matches the namespace exactly, so tell it moto's spelling.
    libcloud_ec2.NAMESPACE = f"http://ec2.amazonaws.com/doc/{libcloud_ec2.API_VERSION}"
    # Signature v4 carries the service name, which is how moto routes to EC2.
    # Libcloud's annotations are partial; treat the driver as untyped.
    driver_cls: Any = EC2NodeDriver
    driver = driver_cls(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"],
                        secure=False, host=host, port=int(port), region=REGION,
                        signature_version="4")
    calls: Counter[str] = Counter()
    _counted(driver, calls, latency)
    start = time.perf_counter()
    image = driver.list_images(ex_owner=OFFICIAL_OWNER, ex_filters={
        "name": f"talos-{VERSION}-{REGION}-amd64"})[0]
    size = next(s for s in driver.list_sizes() if s.id == "t3.small")
    nodes = [
        driver.create_node(
            name=f"node-{i:03d}", size=size, image=image, ex_userdata=CONFIG,
            ex_metadata={"cluster": "bench", "request": f"node-{i:03d}"},
            ex_clienttoken=f"bench-node-{i:03d}",
        )
        for i in range(machines)
    ]
    ready = driver.wait_until_running(nodes, wait_period=0.1, timeout=600,
                                      ssh_interface="private_ips")
    seconds = time.perf_counter() - start
    return Result("libcloud", seconds, calls, len(ready))


def _show(machines: int, latency_ms: float, results: list[Result]) -> None:
    print(f"\n{machines} machines, {latency_ms:g} ms added per API request")
    header = f"{'wall s':>8} {'calls':>6} {'calls/machine':>14} {'running':>8}"
    print(f"  {'':10} {header}  by operation")
    for result in results:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(result.calls.items()))
        print(f"  {result.name:10} {result.seconds:8.2f} {sum(result.calls.values()):6d} "
              f"{result.per_machine(machines):14.2f} {result.running:8d}  {ops}")
    theirs = results[-1]
    for ours in results[:-1]:
        print(f"  libcloud/{ours.name} wall time: {theirs.seconds / ours.seconds:.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    import os

    os.environ.update(fake_credentials())
    with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
        work = Path(tmp)
        server = start_moto_server(work / "moto")
        try:
            server.reset()
            run_libcloud(server, 1, 0.0)  # warm moto's EC2 backend up (~1-3 s once)
            for latency_ms in (0.0, args.latency_ms):
                results = []
                for name, run in (("driver", run_driver), ("talprov", run_talprov)):
                    server.reset()
                    run_dir = work / f"{name}-{latency_ms:g}"
                    run_dir.mkdir()
                    results.append(run(server, args.machines, latency_ms / 1000, run_dir))
                server.reset()
                results.append(run_libcloud(server, args.machines, latency_ms / 1000))
                _show(args.machines, latency_ms, results)
                if any(r.running != args.machines for r in results):
                    print("  ERROR: not every machine is running", file=sys.stderr)
                    return 1
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Create N Talos machines on one moto EC2 server: lower bound, talprov, Libcloud, boto3 loop.

    python bench/aws_create.py [--machines 100] [--latencies 0,50,200] [--repeat 3]

Every tool does the same job against the same moto server (reset in between):
find the Talos AMI, launch N instances with the machine config as user-data,
and wait until all of them run. Each configuration adds a fixed delay before
every API request (a distant endpoint; moto's own CPU dominates at 0 ms).

* ``bound``: the least a client can send: one DescribeImages, one RunInstances
  per 1,000 machines, then DescribeInstances until all run (moto: once).
* ``bound-safe``: the same three calls, launching what any crash-safe provider
  must: the ownership tags a listing selects by, the labels the scaler's orphan
  check reads, the member list that maps each instance to its request (without
  them a launch cut short by a crash cannot be told apart from a leak), the
  root volume the requests ask for (encrypted gp3 by default), IMDSv2 and a
  ClientToken. ``bound`` sends none of this, so it is lower than any correct
  provider can get; this is the honest bound.
* ``bound-job``: ``bound-safe`` plus the ownership tags talprov also puts on the
  volumes (EBS costs are allocated by the volume's own tags): exactly the
  parameters talprov sends, i.e. what the job itself costs the API, apart from
  how talprov drives it. moto's tag lookups scan every tag of the account per
  instance, so tags weigh more there than on EC2.
* ``talprov``: requests in its SQLite store, its real reconciler driving the
  AWS provider, on the REAL clock (any Retry(after=…) is really waited).
* ``libcloud``: Apache Libcloud's EC2NodeDriver as its users write it:
  list_images once, create_node per machine, wait_until_running.
* ``boto3-loop``: the naive SDK loop: run_instances per machine, then the
  ``instance_running`` waiter.

Printed per configuration: min and median wall seconds of ``--repeat`` runs,
EC2 requests per machine, each tool's time over the bound, the peers' time
over talprov's, and talprov's time over each bound within every repeat (the
tools of one repeat run back to back, so these ratios drift least when the
machine is shared); then the CPU seconds of each tool's own process and of
moto's during the timed part (min/median) and the full garbage collections
inside timed runs: at 0 ms the wall time is about the CPU sum, and CPU time
shows where it goes even when other work shares the machine, so at 0 ms
talprov's CPU sum over each bound's is printed per repeat too. (Libcloud and
the loop ask for no IMDSv2 and no tags at launch: their job is a little
lighter.)

Before every run the account gets what any AWS account that ever encrypted a
volume has: its default EBS key (``alias/aws/ebs``). moto forgets it on every
reset and makes it again, with an RSA key generation of 50-300 ms, inside the
first encrypted launch: a random cost that would land on whichever tool
encrypts (talprov, bound-job) and never on AWS's critical path. moto itself is
warmed up first with two launches like talprov's: its first tagged, encrypted
launches run up to 2x slower and would weigh on the first repeats. talprov is
warmed up too, once: its first run in a process loads botocore's paginator
model into the process-wide loader (~0.1 s), which ``bound``'s clients, made
by boto3's default session, loaded during moto's warm-up.

Before every timed run the bench process collects its garbage (``gc.collect()``,
outside the timing, for every tool alike). Otherwise a full collection of the
whole bench process (some 220,000 objects: every tool's imports, botocore's
models, what earlier runs left) lands inside whichever run pushes CPython's
count of surviving objects over its threshold, i.e. on a tool picked by what
ran before it, not by what it does: 0.10-0.18 s of CPU (up to 0.5 s of wall
time on a loaded machine) against 0.4-0.5 s for a whole run at 0 ms; without
the collection 8 of 28 timed runs got one, spread over all tools. A collection
that a run's own allocations still trigger stays in its time; the last column
of the CPU table counts them.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
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

from bench import report  # noqa: E402
from bench.report import Result  # noqa: E402
from talprov.aws.config import AwsConfig  # noqa: E402
from talprov.aws.data import RootVolume, Spot  # noqa: E402
from talprov.aws.instances import (  # noqa: E402
    LaunchGroup,
    LaunchShape,
    Member,
    launch_token,
    run_params,
    user_data_digest,
)
from talprov.aws.provider import AwsProvider  # noqa: E402
from talprov.providers.ownership import REQUEST_KEY, ownership_tags  # noqa: E402
from talprov.providers.protocol import Runtime  # noqa: E402
from talprov.providers.types import MachineRequest, Owner, Stage  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
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
class Timed(Result):
    """A run's result with the CPU seconds of the tool's process and of moto's."""

    client_cpu: float = 0.0
    server_cpu: float = 0.0
    full_collections: int = 0


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _full_collections() -> int:
    """How many full (generation 2) garbage collections this process has run."""
    return int(gc.get_stats()[2]["collections"])


class Stopwatch:
    """Wall time, this process's CPU time, moto's CPU time and this process's full
    garbage collections from start to stop."""

    def __init__(self, server: MotoServer) -> None:
        self._pid = server.process.pid
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._server = _process_cpu(self._pid)
        self._collections = _full_collections()
        self._stopped: tuple[float, float, float, int] | None = None

    def stop(self) -> None:
        """Stop the clocks (the first call counts)."""
        if self._stopped is None:
            self._stopped = (time.perf_counter() - self._wall, time.process_time() - self._cpu,
                             _process_cpu(self._pid) - self._server,
                             _full_collections() - self._collections)

    def result(self, name: str, calls: Counter[str], running: int) -> Timed:
        """The run's result; stops the clocks unless stopped before."""
        self.stop()
        assert self._stopped is not None
        seconds, client, server, collections = self._stopped
        return Timed(name, seconds, calls, running, client_cpu=client, server_cpu=server,
                     full_collections=collections)


def _boto_ec2(server: MotoServer, latency: float) -> tuple[Any, CallCounter]:
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=server.url)
    counter = CallCounter()
    counter.attach(ec2)
    if latency:
        Latency(latency).attach(ec2)
    return ec2, counter


def _official_ami(ec2: Any) -> str:
    images = ec2.describe_images(Owners=[OFFICIAL_OWNER], Filters=[
        {"Name": "name", "Values": [f"talos-{VERSION}-{REGION}-amd64"]}])["Images"]
    return str(images[0]["ImageId"])


def _wait_all_running(ec2: Any, ids: list[str]) -> int:
    """DescribeInstances (filtered by id) until every instance runs; the running count."""
    delay = 0.0
    while True:
        time.sleep(delay)
        running = 0
        for start in range(0, len(ids), 200):
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": ids[start:start + 200]}])
            running += sum(1 for page in pages for r in page["Reservations"]
                           for i in r["Instances"] if i["State"]["Name"] == "running")
        if running == len(ids):
            return running
        delay = min(5.0, max(0.5, delay * 2))


def _account_defaults(server: MotoServer) -> None:
    """Make the account's default EBS key exist (outside any timing): an encrypted
    volume created and deleted, which is how EC2 creates that key."""
    ec2, _ = _boto_ec2(server, 0.0)
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, Encrypted=True)
    ec2.delete_volume(VolumeId=volume["VolumeId"])


def run_bound(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """The unavoidable calls only: image, launch(es), look until running."""
    ec2, counter = _boto_ec2(server, latency)
    watch = Stopwatch(server)
    ami = _official_ami(ec2)
    ids: list[str] = []
    for first in range(0, machines, 1000):
        count = min(1000, machines - first)
        reply = ec2.run_instances(ImageId=ami, InstanceType="t3.small", MinCount=count,
                                  MaxCount=count, UserData=CONFIG)
        ids += [i["InstanceId"] for i in reply["Instances"]]
    running = _wait_all_running(ec2, ids)
    return watch.result("bound", counter.calls, running)


def run_bound_job(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """The unavoidable calls, launching exactly what talprov launches (same parameters)."""
    return _launch_like_talprov("bound-job", server, machines, latency, volume_tags=True)


def run_bound_safe(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """The unavoidable calls, launching what every crash-safe provider must launch."""
    return _launch_like_talprov("bound-safe", server, machines, latency, volume_tags=False)


def _launch_like_talprov(name: str, server: MotoServer, machines: int, latency: float, *,
                         volume_tags: bool) -> Result:
    """DescribeImages, RunInstances with talprov's parameters (its volume tags only
    with ``volume_tags``), DescribeInstances until all run."""
    ec2, counter = _boto_ec2(server, latency)
    watch = Stopwatch(server)
    ami = _official_ami(ec2)
    owner = Owner("bench", "aws-bench")
    requests = _requests(machines)
    tags = {k: v for k, v in ownership_tags(owner, requests[0]).items() if k != REQUEST_KEY}
    shape = LaunchShape(
        image_id=ami, root_device_name="/dev/xvda", instance_types=("t3.small",), subnets=(),
        security_groups=(), root_volume=RootVolume(), spot=Spot(), iam_instance_profile=None,
        key_name=None, placement_group=None, tags=tuple(sorted(tags.items())),
        user_data_sha256=user_data_digest(CONFIG))
    ids: list[str] = []
    for first in range(0, machines, 1000):
        members = [Member(r.id, "bench") for r in requests[first:first + 1000]]
        group = LaunchGroup(shape, CONFIG, members)
        token = launch_token(owner, group, "t3.small", None)
        params = run_params(group, "t3.small", None, token)
        if not volume_tags:
            params["TagSpecifications"] = [t for t in params["TagSpecifications"]
                                           if t["ResourceType"] != "volume"]
        reply = ec2.run_instances(**params)
        ids += [i["InstanceId"] for i in reply["Instances"]]
    running = _wait_all_running(ec2, ids)
    return watch.result(name, counter.calls, running)


def run_boto3_loop(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """What a user writes with boto3: one run_instances per machine, then the waiter."""
    ec2, counter = _boto_ec2(server, latency)
    watch = Stopwatch(server)
    ami = _official_ami(ec2)
    ids = []
    for i in range(machines):
        reply = ec2.run_instances(
            ImageId=ami, InstanceType="t3.small", MinCount=1, MaxCount=1, UserData=CONFIG,
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": "Name", "Value": f"node-{i:03d}"}]}])
        ids.append(reply["Instances"][0]["InstanceId"])
    ec2.get_waiter("instance_running").wait(InstanceIds=ids)
    watch.stop()
    running = _wait_all_running(ec2, ids)
    counter.calls["DescribeInstances"] -= 1  # the check is not part of the job
    return watch.result("boto3-loop", counter.calls, running)


def run_talprov(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
    """talprov: requests in the store, the reconciler drives the AWS provider, real clock."""
    runtime = Runtime(installation="bench", cache_dir=work / "cache")
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
        # A count, as a status check would ask: reading whole records would
        # decrypt every machine config, which is the bench's cost, not talprov's.
        return store.count_requests().get(("aws-bench", Stage.PROVISIONED), 0) == machines

    watch = Stopwatch(server)
    done = reconciler.run_until(provisioned, timeout=600, interval=provider.config.poll_interval)
    watch.stop()
    if not done:
        raise RuntimeError("talprov did not provision every machine")
    before = counter.calls["DescribeInstances"]
    running = sum(1 for m in provider.list_machines(Owner("bench", "aws-bench"))
                  if m.state.value == "running")
    counter.calls["DescribeInstances"] = before  # the check is not part of the job
    reconciler.close()
    store.close()
    return watch.result("talprov", counter.calls, running)


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


def run_libcloud(server: MotoServer, machines: int, latency: float, work: Path) -> Result:
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
    watch = Stopwatch(server)
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
    return watch.result("libcloud", calls, len(ready))


RUNNERS: dict[str, Callable[[MotoServer, int, float, Path], Result]] = {
    "bound": run_bound, "bound-safe": run_bound_safe, "bound-job": run_bound_job,
    "talprov": run_talprov,
    "libcloud": run_libcloud, "boto3-loop": run_boto3_loop,
}


def _show(machines: int, latency_ms: float, runs: dict[str, list[Result]]) -> None:
    report.show(machines, latency_ms, runs, width=11)
    # Runs of one repeat ran back to back, under the same load of a shared
    # machine: their ratios drift less than ratios of minimums.
    for reference in ("bound", "bound-safe", "bound-job"):
        if reference in runs:
            paired = [t.seconds / b.seconds for t, b in zip(runs["talprov"], runs[reference],
                                                            strict=True)]
            listed = ", ".join(f"{r:.2f}" for r in paired)
            print(f"  talprov / {reference} per repeat: {listed} "
                  f"(median {statistics.median(paired):.2f})")
    # At 0 ms the wall time is about the two processes' CPU time, which other
    # work on the machine stretches far less than the wall time.
    busy = {name: [r.client_cpu + r.server_cpu for r in results if isinstance(r, Timed)]
            for name, results in runs.items()}
    for reference in ("bound", "bound-safe", "bound-job") if latency_ms == 0 else ():
        if busy.get(reference) and busy["talprov"]:
            paired = [t / b for t, b in zip(busy["talprov"], busy[reference], strict=True) if b]
            listed = ", ".join(f"{r:.2f}" for r in paired)
            print(f"  talprov / {reference} per repeat, CPU s (tool + moto): {listed} "
                  f"(median {statistics.median(paired):.2f})")
    print("  CPU s during the timed part, min/median: the tool's process | moto's"
          " | full GCs of the tool's process, all repeats")
    for name, results in runs.items():
        timed = [r for r in results if isinstance(r, Timed)]
        if timed:
            own = [r.client_cpu for r in timed]
            moto = [r.server_cpu for r in timed]
            print(f"  {name:11}{min(own):6.2f} /{statistics.median(own):5.2f}  |"
                  f"{min(moto):6.2f} /{statistics.median(moto):5.2f}  |"
                  f"{sum(r.full_collections for r in timed):3d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--latencies", default="0,50,200", help="ms, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(RUNNERS), help="tools, comma-separated")
    args = parser.parse_args(argv)
    os.environ.update(fake_credentials())
    tools = [t for t in args.only.split(",") if t]
    if "bound" not in tools or "talprov" not in tools:
        parser.error("--only must keep bound and talprov (the ratios need them)")
    with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
        work = Path(tmp)
        server = start_moto_server(work / "moto")
        try:
            server.reset()
            run_bound(server, 1, 0.0, work)  # warm moto's EC2 backend up (~1-3 s once)
            # ...and the paths of a tagged, encrypted launch of every size used: moto's
            # first ones run up to 2x slower, which would land on the first repeats.
            for _ in range(2):
                server.reset()
                _account_defaults(server)
                run_bound_job(server, args.machines, 0.0, work)
            server.reset()  # talprov's process-wide caches, as bound's were above
            _account_defaults(server)
            (work / "talprov-warm-up").mkdir()
            run_talprov(server, args.machines, 0.0, work / "talprov-warm-up")
            for latency_ms in (float(x) for x in args.latencies.split(",")):
                runs: dict[str, list[Result]] = {name: [] for name in tools}
                for attempt in range(args.repeat):
                    for name in tools:  # interleaved, so drift hits every tool alike
                        server.reset()
                        _account_defaults(server)
                        run_dir = work / f"{name}-{latency_ms:g}-{attempt}"
                        run_dir.mkdir()
                        gc.collect()  # no earlier run's garbage in this run's time
                        result = RUNNERS[name](server, args.machines, latency_ms / 1000, run_dir)
                        if result.running != args.machines:
                            print(f"ERROR: {name}: {result.running} of {args.machines} run",
                                  file=sys.stderr)
                            return 1
                        runs[name].append(result)
                _show(args.machines, latency_ms, runs)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Create N Talos servers on the fake OpenStack cloud: lower bounds, talprov, Libcloud, an SDK loop.

    python bench/openstack_create.py [--servers 30] [--latencies 0,100] [--repeat 3]

Every tool does the same job on a fresh fake cloud (Keystone v3, Nova, Glance,
Neutron over real HTTP; talprov/testing/openstack) with a fixed delay added
before every API answer: boot N servers from an existing image and flavor on
network ``private`` with the machine config as user_data, and wait until all
are ACTIVE.

* ``bound``: the least a client can send for talprov's result, as fast as it
  can: one lookup each of image, flavor and network (side by side), ONE bulk
  create of the servers' ports carrying their tags (talprov's crash safety: a
  port made just before a crash is found by its tags), one server create per
  machine (8 at a time, as talprov) on its port with its tags and its own
  user_data naming its host, then server listings until all are ACTIVE; plain
  JSON (no openstacksdk objects).
* ``bare-bound``: the same without the port create: Nova makes each server's
  port itself, untagged (the bound before talprov's tagged ports were counted).
* ``sdk-bound``: ``bare-bound``'s calls through openstacksdk, the lookups one
  after another (the bench's bound before that).
* ``talprov``: requests in its SQLite store, its real reconciler driving the
  OpenStack provider on the REAL clock (tagged ports first, for crash safety),
  until the store counts every request provisioned. Its leftover sweep is left
  to a later pass without work, as always (outside the timed run).
* ``libcloud``: Apache Libcloud's OpenStack driver (API 2.0) as its users write
  it: list_images, list_sizes and ex_list_networks once, create_node per server
  (one after another), then wait_until_running (0.1 s period, as in
  bench/aws_create.py).
* ``sdk-loop``: the naive openstacksdk loop: find image/flavor/network, then per
  server ``create_server`` and ``wait_for_server`` (its default 2 s poll).

Before every timed run the bench process collects its garbage (``gc.collect()``),
as bench/aws_create.py does: a full collection of the whole heap that earlier
runs left (up to 0.17 s of CPU here) would otherwise land on whichever tool
runs next.

Printed per configuration: min and median wall seconds of ``--repeat`` runs,
the median process CPU of a run's timed part (the fake cloud's share included:
it serves in this process), API calls per server (Keystone excluded), each
tool's time over the bound and over talprov's, then one line with talprov's
ratio to the bound (of the minimums and of the medians) and the peers' ratios
to talprov (all from the same run).
"""

from __future__ import annotations

import argparse
import base64
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from libcloud.compute.providers import get_driver  # noqa: E402
from libcloud.compute.types import Provider as LibcloudProvider  # noqa: E402

from talprov.openstack.client import connect  # noqa: E402
from talprov.openstack.config import OpenStackAuth, OpenStackConfig  # noqa: E402
from talprov.openstack.provider import OpenStackProvider  # noqa: E402
from talprov.providers.protocol import Runtime  # noqa: E402
from talprov.providers.types import MachineRequest, Stage  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from talprov.testing.openstack import FakeOpenStack  # noqa: E402
from talprov.testing.openstack.wire import Request, Response  # noqa: E402

IMAGE = "talos-v1.11.5-amd64"
FLAVOR = "m1.small"
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: bench\n"
USER_DATA = base64.b64encode(CONFIG.encode()).decode()


class SlowCloud(FakeOpenStack):
    """The fake cloud with a fixed delay before every answer (outside its lock)."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency

    def dispatch(self, req: Request) -> Response:
        if self.latency:
            time.sleep(self.latency)
        return super().dispatch(req)


@dataclass
class Result:
    name: str
    seconds: float
    calls: int
    active: int
    #: Process CPU seconds of the timed part.
    cpu: float


class Stopwatch:
    """Wall and process CPU time since it was made."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def result(self, name: str, calls: int, active: int) -> Result:
        return Result(name, time.perf_counter() - self.wall, calls, active,
                      time.process_time() - self.cpu)


def _config(cloud: FakeOpenStack) -> OpenStackConfig:
    return OpenStackConfig(auth=OpenStackAuth(**cloud.auth()), region="RegionOne")


def _cloud_calls(cloud: FakeOpenStack) -> int:
    return sum(1 for _, path, _ in cloud.calls if not path.startswith("/identity"))


def _all_active(conn: Any, servers: int) -> int:
    delay = 0.0
    while True:
        time.sleep(delay)
        active = sum(1 for s in conn.compute.servers(details=True) if s.status == "ACTIVE")
        if active == servers:
            return active
        delay = min(2.0, max(0.25, delay * 2))


def _json(response: Any, key: str) -> Any:
    response.raise_for_status()
    return response.json()[key]


def _named_user_data(i: int) -> str:
    """Server i's user_data: the config naming its host, as talprov hands it (Talos
    1.11 takes the name from machine.network.hostname)."""
    return base64.b64encode(CONFIG.replace(
        "machine:\n", f"machine:\n  network:\n    hostname: node-{i:03d}\n", 1).encode()).decode()


def _bound(cloud: FakeOpenStack, servers: int, name: str, *, tagged_ports: bool) -> Result:
    conn = connect(_config(cloud))
    conn.authorize()
    cloud.calls.clear()
    start = Stopwatch()
    # The three lookups side by side, and plain JSON throughout: no SDK objects.
    with ThreadPoolExecutor(max_workers=3) as pool:
        images = pool.submit(lambda: _json(conn.image.get("/images", params={"name": IMAGE}),
                                           "images"))
        flavors = pool.submit(lambda: _json(conn.compute.get("/flavors"), "flavors"))
        nets = pool.submit(lambda: _json(conn.network.get(
            "/networks", params={"name": "private"}), "networks"))
        image_id = images.result()[0]["id"]
        flavor_id = next(f["id"] for f in flavors.result() if f["name"] == FLAVOR)
        net_id = nets.result()[0]["id"]
    owner = ["talprov-installation=bench", "talprov-instance=os-bench"]
    networks: list[list[dict[str, str]]] = [[{"uuid": net_id}]] * servers
    if tagged_ports:
        made = _json(conn.network.post("/ports", json={"ports": [
            {"network_id": net_id, "name": f"node-{i:03d}-0",
             "tags": [*owner, f"talprov-request=node-{i:03d}", "talprov-port=0"]}
            for i in range(servers)]}), "ports")
        networks = [[{"port": port["id"]}] for port in made]

    def create(i: int) -> None:
        body: dict[str, Any] = {
            "name": f"node-{i:03d}", "imageRef": image_id, "flavorRef": flavor_id,
            "networks": networks[i], "user_data": _named_user_data(i)}
        if tagged_ports:
            body["tags"] = [*owner, f"talprov-request=node-{i:03d}"]
        _json(conn.compute.post("/servers", json={"server": body},
                                microversion="2.52" if tagged_ports else None), "server")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(servers)))
    delay = 0.0
    while True:
        time.sleep(delay)
        listed = _json(conn.compute.get("/servers/detail"), "servers")
        active = sum(1 for s in listed if s["status"] == "ACTIVE")
        if active == servers:
            break
        delay = min(2.0, max(0.25, delay * 2))
    return start.result(name, _cloud_calls(cloud), active)


def run_bound(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    return _bound(cloud, servers, "bound", tagged_ports=True)


def run_bare_bound(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    return _bound(cloud, servers, "bare-bound", tagged_ports=False)


def run_sdk_bound(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    """The same calls as ``bound`` through openstacksdk, lookups one after another
    (the bench's bound until talprov beat it)."""
    conn = connect(_config(cloud))
    conn.authorize()
    cloud.calls.clear()
    start = Stopwatch()
    image = next(iter(conn.image.images(name=IMAGE)))
    flavor = next(f for f in conn.compute.flavors(details=False) if f.name == FLAVOR)
    net = next(iter(conn.network.networks(name="private")))

    def create(i: int) -> None:
        conn.compute.create_server(name=f"node-{i:03d}", image_id=image.id,
                                   flavor_id=flavor.id, networks=[{"uuid": net.id}],
                                   user_data=USER_DATA)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(servers)))
    active = _all_active(conn, servers)
    return start.result("sdk-bound", _cloud_calls(cloud), active)


def run_sdk_loop(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    conn = connect(_config(cloud))
    conn.authorize()
    cloud.calls.clear()
    start = Stopwatch()
    image = conn.image.find_image(IMAGE)
    flavor = conn.compute.find_flavor(FLAVOR)
    net = conn.network.find_network("private")
    made = [conn.compute.create_server(name=f"node-{i:03d}", image_id=image.id,
                                       flavor_id=flavor.id, networks=[{"uuid": net.id}],
                                       user_data=USER_DATA)
            for i in range(servers)]
    for server in made:
        conn.compute.wait_for_server(server)
    result = start.result("sdk-loop", _cloud_calls(cloud), 0)
    result.active = _all_active(conn, servers)
    return result


def run_libcloud(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    auth = cloud.auth()
    # Libcloud's annotations are partial; treat the driver as untyped.
    driver_cls: Any = get_driver(LibcloudProvider.OPENSTACK)
    driver = driver_cls(auth["username"], auth["password"], api_version="2.0",
                        ex_force_auth_url=cloud.url + "/identity",
                        ex_force_auth_version="3.x_password",
                        ex_tenant_name=auth["project_name"], ex_domain_name="Default",
                        ex_force_service_region="RegionOne")
    cloud.calls.clear()
    start = Stopwatch()
    image = next(i for i in driver.list_images() if i.name == IMAGE)
    size = next(s for s in driver.list_sizes() if s.name == FLAVOR)
    net = next(n for n in driver.ex_list_networks() if n.name == "private")
    nodes = [driver.create_node(name=f"node-{i:03d}", size=size, image=image, networks=[net],
                                ex_userdata=CONFIG)
             for i in range(servers)]
    ready = driver.wait_until_running(nodes, wait_period=0.1, timeout=600,
                                      ssh_interface="private_ips")
    return start.result("libcloud", _cloud_calls(cloud), len(ready))


def run_talprov(cloud: FakeOpenStack, servers: int, work: Path) -> Result:
    runtime = Runtime(installation="bench", cache_dir=work / "cache")
    provider = OpenStackProvider("os-bench", _config(cloud), runtime)
    provider.client.conn.authorize()
    store = Store(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    for i in range(servers):
        store.create_request(MachineRequest(
            id=f"node-{i:03d}", provider="os-bench", talos_version="v1.11.5",
            machine_config=CONFIG, provider_data={"image": IMAGE, "flavor": FLAVOR,
                                                  "networks": ["private"]}))
    reconciler = Reconciler(store, {"os-bench": ProviderHandle(provider, 8)}, runtime)
    cloud.calls.clear()
    start = Stopwatch()
    # Counted in SQL after every pass: reading the records would decrypt every
    # machine config, the bench's own CPU on talprov's clock (2-3 ms a pass).
    done = reconciler.run_until(
        lambda: store.count_requests().get(("os-bench", Stage.PROVISIONED), 0) == servers,
        timeout=600, interval=provider.config.poll_interval)
    result = start.result("talprov", _cloud_calls(cloud), 0)
    reconciler.close()
    store.close()
    if not done:
        raise RuntimeError("talprov did not provision every server")
    result.active = sum(1 for s in cloud.servers() if s.status == "ACTIVE")
    return result


RUNNERS: dict[str, Callable[[FakeOpenStack, int, Path], Result]] = {
    "bound": run_bound, "bare-bound": run_bare_bound, "sdk-bound": run_sdk_bound,
    "talprov": run_talprov,
    "libcloud": run_libcloud, "sdk-loop": run_sdk_loop,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=30)
    parser.add_argument("--latencies", default="0,100", help="ms, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(RUNNERS),
                        help="tools to run, comma-separated (bound and talprov always run)")
    args = parser.parse_args(argv)
    wanted = {"bound", "talprov", *args.only.split(",")}
    runners = {name: run for name, run in RUNNERS.items() if name in wanted}
    with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
        for latency_ms in (float(x) for x in args.latencies.split(",")):
            runs: dict[str, list[Result]] = {name: [] for name in runners}
            for attempt in range(args.repeat):
                for name, run in runners.items():
                    with SlowCloud(latency_ms / 1000) as cloud:
                        cloud.add_image(IMAGE)
                        work = Path(tmp) / f"{name}-{latency_ms:g}-{attempt}"
                        work.mkdir()
                        gc.collect()  # no earlier run's garbage in this run's time
                        result = run(cloud, args.servers, work)
                    if result.active != args.servers:
                        print(f"ERROR: {name}: {result.active} of {args.servers} active",
                              file=sys.stderr)
                        return 1
                    runs[name].append(result)
            bound = min(r.seconds for r in runs["bound"])
            ours = min(r.seconds for r in runs["talprov"])
            print(f"\n{args.servers} servers, {latency_ms:g} ms added per API request "
                  f"(real clock, min/median of {args.repeat})")
            print(f"  {'':10}{'min s':>8}{'median s':>10}{'cpu ms':>8}{'calls/server':>14}"
                  f"{'/ bound':>9}{'/ talprov':>11}")
            for name, results in runs.items():
                fastest = min(r.seconds for r in results)
                median = statistics.median(r.seconds for r in results)
                cpu_ms = statistics.median(r.cpu for r in results) * 1000
                print(f"  {name:10}{fastest:8.2f}{median:10.2f}{cpu_ms:8.0f}"
                      f"{results[0].calls / args.servers:14.2f}{fastest / bound:8.2f}x"
                      f"{fastest / ours:10.2f}x")
            best = {name: min(r.seconds for r in results) for name, results in runs.items()}
            ratios = [f"talprov / {name} {ours / best[name]:.2f}x"
                      for name in ("bare-bound", "sdk-bound") if name in best]
            ratios += [f"{name} / talprov {best[name] / ours:.2f}x"
                       for name in ("libcloud", "sdk-loop") if name in best]
            others = ", ".join(ratios)
            medians = (statistics.median(r.seconds for r in runs["talprov"])
                       / statistics.median(r.seconds for r in runs["bound"]))
            print(f"  => talprov / bound {ours / bound:.2f}x (of medians {medians:.2f}x), "
                  f"{others}; calls per server: "
                  f"talprov {runs['talprov'][0].calls / args.servers:.2f}, "
                  f"bound {runs['bound'][0].calls / args.servers:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

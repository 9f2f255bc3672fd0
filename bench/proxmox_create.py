"""Create N Talos VMs on fakepve: lower bound, talprov, the proxmoxer loop.

    python bench/proxmox_create.py [--machines 20] [--latencies 0,50] [--repeat 3]

Every tool does the same job on one fakepve server (reset in between; the Talos
ISO is already on the node's ``local`` storage, as after the first machine): for
each machine upload a NoCloud seed ISO carrying its machine config, create a
QEMU VM booting the Talos ISO with that seed, start it, and wait until every VM
runs. Each configuration adds a fixed delay before every API answer (fakepve's
``slow_network``) on the REAL clock.

fakepve ends creates and starts the moment they begin, which real PVE never
does (a create allocates disks, a start launches QEMU: a second or more). A
bench on that would hide every idle wait of a client that polls its tasks, so
the server runs at ``time_scale`` 1 with creates, clones and starts lasting
``TASK_LATENCIES`` × the configured latency (1 s at 50 ms) and the seed ISO's
copy task 2 ×; at 0 ms they still run as tasks, only instantly.

* ``bound``: the least a client can send: one ``/cluster/nextid`` (ids counted
  up locally), then per machine (8 at a time, as talprov) the upload, the
  create and the start, following each task with short polls (0.05 s doubling,
  at most 1 s) so as not to race the lock; then ``/cluster/resources`` until
  every VM runs. Each of its 8 threads takes one machine through all its calls
  (a pipeline); talprov takes every machine through a step before the next, and
  can come out a little faster at 50 ms. A bound below both would need PVE to
  take several creates in one call, which it cannot.
* ``talprov``: requests in its SQLite store, its real reconciler driving the
  Proxmox provider (defaults: ``poll_interval`` 2 s) on the REAL clock.
* ``proxmoxer``: the loop a user writes: per machine ``nextid``, upload,
  create, start, each task waited with proxmoxer's ``Tasks.blocking_status``
  (1 s polls), then each VM's ``status/current`` until it runs.

Printed per configuration: min and median wall seconds of ``--repeat`` runs,
API calls per machine (logins excluded), each tool's time over the bound and
over talprov's.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxmoxer import ProxmoxAPI  # noqa: E402
from proxmoxer.tools import Tasks  # noqa: E402

from bench import report  # noqa: E402
from bench.report import Result  # noqa: E402
from talprov.demo_platforms.fakepve_control import FakePveServer, start_fakepve  # noqa: E402
from talprov.providers.protocol import Provider, Runtime  # noqa: E402
from talprov.providers.types import MachineRequest, Stage  # noqa: E402
from talprov.proxmox.config import ProxmoxConfig  # noqa: E402
from talprov.proxmox.images import build_seed_iso, iso_file_name  # noqa: E402
from talprov.proxmox.provider import ProxmoxProvider  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402

VERSION = "v1.11.5"
ISO_URL = (f"https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c"
           f"80be1f2ec7d603b4ba/{VERSION}/nocloud-amd64.iso")
ISO = f"local:iso/{iso_file_name(ISO_URL)}"
NODE = "pve1"
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: bench\n"
#: Task durations in multiples of the configured latency.
TASK_LATENCIES = {"qmcreate": 20.0, "qmclone": 20.0, "qmstart": 20.0, "imgcopy": 2.0}
WORKERS = 8


def _api(server: FakePveServer) -> Any:
    return ProxmoxAPI(server.host, port=server.port, user=server.user,
                      password=server.password, verify_ssl=str(server.ca_file))


def _calls(server: FakePveServer) -> Counter[str]:
    """API calls since the last reset, by kind (logins left out)."""
    counts: Counter[str] = Counter()
    for method, path in server.control("requests"):
        if path.endswith("/access/ticket"):
            continue
        kind = path.split("/api2/json/", 1)[-1]
        kind = "/".join(p if not p[:1].isdigit() and not p.startswith("UPID") else "*"
                        for p in kind.split("/"))
        counts[f"{method} {kind}"] += 1
    return counts


def _seed(i: int) -> io.BytesIO:
    name = f"node-{i:03d}"
    body = io.BytesIO(build_seed_iso(CONFIG, f"instance-id: {name}\nlocal-hostname: {name}\n",
                                     None))
    body.name = f"seed-{name}.iso"
    return body


def _vm_body(vmid: int, i: int) -> dict[str, Any]:
    return {"vmid": vmid, "name": f"node-{i:03d}", "ostype": "l26", "cores": 2,
            "memory": 2048, "scsihw": "virtio-scsi-single", "scsi0": "local-lvm:20",
            "ide2": f"{ISO},media=cdrom", "ide3": f"local:iso/seed-node-{i:03d}.iso,media=cdrom",
            "boot": "order=scsi0;ide2", "net0": "virtio,bridge=vmbr0"}


def _follow(api: Any, upid: str) -> None:
    """Poll a task until it ends (0.05 s doubling, at most 1 s); raise if it failed."""
    delay = 0.05
    while True:
        status = api.nodes(NODE).tasks(upid).status.get()
        if status["status"] == "stopped":
            if status.get("exitstatus") != "OK":
                raise RuntimeError(f"task failed: {status.get('exitstatus')}")
            return
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def _running(api: Any) -> int:
    return sum(1 for r in api.cluster.resources.get(type="vm") if r.get("status") == "running")


def run_bound(server: FakePveServer, machines: int, work: Path) -> Result:
    api = _api(server)
    server.control("reset")
    start = time.perf_counter()
    first = int(api.cluster.nextid.get())

    def make(i: int) -> None:
        node = api.nodes(NODE)
        _follow(api, node.storage("local").upload.post(content="iso", filename=_seed(i)))
        _follow(api, node.qemu.post(**_vm_body(first + i, i)))
        node.qemu(first + i).status.start.post()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(make, range(machines)))
    delay = 0.05
    while (running := _running(api)) < machines:
        time.sleep(delay)
        delay = min(1.0, delay * 2)
    return Result("bound", time.perf_counter() - start, _calls(server), running)


def run_proxmoxer(server: FakePveServer, machines: int, work: Path) -> Result:
    api = _api(server)
    server.control("reset")
    start = time.perf_counter()
    vmids = []
    for i in range(machines):
        vmid = int(api.cluster.nextid.get())
        node = api.nodes(NODE)
        Tasks.blocking_status(api, node.storage("local").upload.post(content="iso",
                                                                    filename=_seed(i)))
        Tasks.blocking_status(api, node.qemu.post(**_vm_body(vmid, i)))
        Tasks.blocking_status(api, node.qemu(vmid).status.start.post())
        vmids.append(vmid)
    for vmid in vmids:
        while api.nodes(NODE).qemu(vmid).status.current.get()["status"] != "running":
            time.sleep(1)
    seconds = time.perf_counter() - start
    calls = _calls(server)
    return Result("proxmoxer", seconds, calls, _running(api))


def run_talprov(server: FakePveServer, machines: int, work: Path) -> Result:
    runtime = Runtime(installation="bench", cache_dir=work / "cache")
    config = ProxmoxConfig.model_validate({
        "url": server.url, "username": server.user, "password": server.password,
        "ca_file": str(server.ca_file)})
    provider = ProxmoxProvider("pve-bench", config, runtime, iso_url=lambda request: ISO_URL)
    provider.health()  # log in before the clock starts, as the others do
    store = Store(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    for i in range(machines):
        store.create_request(MachineRequest(
            id=f"node-{i:03d}", provider="pve-bench", talos_version=VERSION,
            machine_config=CONFIG, provider_data={"memory": 2048}))
    handle = ProviderHandle(cast(Provider, provider), WORKERS)
    reconciler = Reconciler(store, {"pve-bench": handle}, runtime)
    server.control("reset")
    start = time.perf_counter()
    done = reconciler.run_until(
        lambda: all(r.stage == Stage.PROVISIONED for r in store.list_requests()),
        timeout=600, interval=config.poll_interval)
    seconds = time.perf_counter() - start
    calls = _calls(server)
    reconciler.close()
    store.close()
    if not done:
        raise RuntimeError("talprov did not provision every machine")
    return Result("talprov", seconds, calls, _running(_api(server)))


RUNNERS: dict[str, Callable[[FakePveServer, int, Path], Result]] = {
    "bound": run_bound, "talprov": run_talprov, "proxmoxer": run_proxmoxer,
}


def main(argv: list[str] | None = None) -> int:
    args = report.options(__doc__.splitlines()[0], list(RUNNERS), argv)
    with tempfile.TemporaryDirectory(prefix="talprov-fakepve-") as tmp:
        (Path(tmp) / "pve").mkdir()
        server = start_fakepve(Path(tmp) / "pve")
        try:
            server.control("add_file", storage="local", name=ISO.split("/", 1)[1],
                           size=100 * 1024 ** 2)
            server.control("snapshot")

            def configure(latency_ms: float) -> None:
                latency = latency_ms / 1000
                server.control("slow_network", latency=latency)
                server.control("set_timing", time_scale=1.0, task_secs={
                    kind: n * latency for kind, n in TASK_LATENCIES.items()})

            return report.compare(
                args, configure,
                lambda name, _ms, folder: RUNNERS[name](server, args.machines, folder))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Clone N Talos VMs on vcsim: lower bound, talprov, the pyvmomi loop.

    python bench/vsphere_create.py [--machines 20] [--latencies 0,50] [--repeat 3]

Every tool does the same job on a fresh vcsim (govmomi's vCenter simulator,
tests/emulators/vcsim) reached through a TCP proxy that delays every request by
the configured latency (tests/emulators/latency.py, in a process of its own so
that its forwarding threads do not wait for the GIL behind the tool's own
Python work; TLS passes through): clone N VMs
from the template ``talos-bench`` into cluster ``DC0_C0`` with 2 CPUs, 2 GiB and
the machine config in ``guestinfo.talos.config``, power them on, and wait until
every one is ``poweredOn``. vcsim ignores the hardware part of a clone spec, so
every tool reconfigures after the clone (real vCenter would not need that call).

vcsim runs a task inside the call that starts it: a clone returns finished. Real
clones and power-ons take seconds, and a client that polls its tasks too rarely
would look fine here, so vcsim is started with ``-method-delay``: ``CloneVM_Task``
and ``PowerOnVM_Task`` take ``TASK_LATENCIES`` × the latency (1 s at 50 ms),
``ReconfigVM_Task`` 4 ×. The delay blocks the call rather than a task running
after it; that still hides a poller's idle waits (the task is done at its first
look), which the bound and talprov both get alike.

* ``bound``: the least a client can send: template, pool and folder looked up
  once, then per machine (8 at a time, as talprov) the clone, the reconfigure
  and the power-on, each task's ``info`` read once (it says the task ended and,
  for the clone, names the new VM); then one
  property-collector read of every VM's power state until all are on.
* ``talprov``: requests in its SQLite store, its real reconciler driving the
  vSphere provider (defaults: ``poll_interval`` 2 s) on the REAL clock.
* ``pyvmomi``: the loop a user writes: find template and pool, then per machine
  ``CloneVM_Task``, ``ReconfigVM_Task``, ``PowerOnVM_Task``, each waited for
  with ``pyVim.task.WaitForTask``.

Printed per configuration: min and median wall seconds of ``--repeat`` runs,
SOAP calls per machine (counted in pyvmomi's stub; a property read is a
``Fetch``; the login left out), each tool's time over the bound and over talprov's;
then each tool's process CPU seconds (min/median; vcsim and the proxy run in
processes of their own, so this is the tool's own work): at 0 ms latency the CPU
decides the wall time.
"""

from __future__ import annotations

import base64
import ssl
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyVim import connect as pyvim_connect  # noqa: E402
from pyVim import task as pyvim_task  # noqa: E402
from pyVmomi import SoapAdapter  # noqa: E402

from bench import report  # noqa: E402
from bench.report import Result  # noqa: E402
from talprov.providers.protocol import Provider, Runtime  # noqa: E402
from talprov.providers.types import MachineRequest, Stage  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from talprov.vmware.config import VSphereConfig  # noqa: E402
from talprov.vmware.provider import VSphereProvider  # noqa: E402
from talprov.vmware.sdk import vim as vim_module  # noqa: E402
from talprov.vmware.sdk import vmodl as vmodl_module  # noqa: E402
from tests.emulators.latency import ProxyProcess  # noqa: E402
from tests.emulators.vcsim.fixture import VcsimServer, start_vcsim  # noqa: E402

TEMPLATE = "talos-bench"
SAMPLE_VM = "DC0_C0_RP0_VM0"
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: bench\n"
#: Method durations in multiples of the configured latency.
TASK_LATENCIES = {"CloneVM_Task": 20, "PowerOnVM_Task": 20, "ReconfigVM_Task": 4}
WORKERS = 8
# pyVmomi is untyped: its types and helpers are Any here, as in talprov.vmware.
vim: Any = vim_module()
PropertyCollector: Any = vmodl_module().query.PropertyCollector
SoapStubAdapter: Any = SoapAdapter.SoapStubAdapter
WaitForTask: Any = pyvim_task.WaitForTask


class SoapCalls:
    """Counts every SOAP call pyvmomi makes in this process, by method name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        invoke = SoapStubAdapter.InvokeMethod

        def counted(stub: Any, mo: Any, info: Any, args: Any, *rest: Any) -> Any:
            # Property reads (vm.config, task.info) arrive here too, as Fetch.
            self._count(str(info.wsdlName))
            return invoke(stub, mo, info, args, *rest)

        setattr(SoapStubAdapter, "InvokeMethod", counted)  # noqa: B010

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def take(self) -> Counter[str]:
        with self._lock:
            taken, self.calls = self.calls, Counter()
        for name in ("Login", "RetrieveServiceContent"):
            taken.pop(name, None)
        return taken


COUNTER = SoapCalls()


@dataclass
class Target:
    """A fresh vcsim with the template, and the proxy in front of it."""

    server: VcsimServer
    proxy: ProxyProcess

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.proxy.port}/sdk"


def _connect(target: Target, direct: bool = False) -> Any:
    port = target.server.port if direct else target.proxy.port
    smart_connect: Any = pyvim_connect.SmartConnect
    return smart_connect(host="127.0.0.1", port=port, user=target.server.user,
                         pwd=target.server.password,
                         sslContext=ssl.create_default_context(cafile=str(target.server.ca_file)))


def _all_vms(si: Any) -> dict[str, Any]:
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return {vm.name: vm for vm in view.view}
    finally:
        view.Destroy()


def _make_template(target: Target) -> None:
    si = _connect(target, direct=True)
    sample = _all_vms(si)[SAMPLE_VM]
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=sample.resourcePool),
                            template=True)
    WaitForTask(sample.CloneVM_Task(sample.parent, TEMPLATE, spec))


def _spec(i: int) -> Any:
    user_data = base64.b64encode(CONFIG.replace("bench", f"bench-{i}").encode()).decode()
    return vim.vm.ConfigSpec(numCPUs=2, memoryMB=2048, extraConfig=[
        vim.option.OptionValue(key="guestinfo.talos.config", value=user_data),
        vim.option.OptionValue(key="guestinfo.talos.config.encoding", value="base64")])


def _powered_on(si: Any, names: set[str]) -> int:
    """Powered-on VMs among ``names``: one property-collector read for all."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        pc = PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                pc.TraversalSpec(name="v", path="view", skip=False, type=type(view))])],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine,
                                     pathSet=["name", "runtime.powerState"])])
        result = content.propertyCollector.RetrievePropertiesEx(
            [spec], pc.RetrieveOptions())
        on = 0
        for item in result.objects if result else ():
            props = {p.name: p.val for p in item.propSet}
            on += props["name"] in names and props["runtime.powerState"] == "poweredOn"
        return on
    finally:
        view.Destroy()


def _place(si: Any) -> tuple[Any, Any, Any]:
    index = si.content.searchIndex
    template = index.FindByInventoryPath(f"DC0/vm/{TEMPLATE}")
    cluster = index.FindByInventoryPath("DC0/host/DC0_C0")
    folder = index.FindByInventoryPath("DC0/vm")
    return template, cluster.resourcePool, folder


def _names(machines: int) -> set[str]:
    return {f"node-{i:03d}" for i in range(machines)}


def _ended(task: Any) -> Any:
    """The task's info once it ended: read once when it already has (as vcsim's have),
    else waited for."""
    info = task.info
    if info.state != vim.TaskInfo.State.success:
        WaitForTask(task)
        info = task.info
    return info


def _waited(task: Any) -> Any:
    """As the pyvmomi loop waits: ``WaitForTask``, then the info for the result."""
    WaitForTask(task)
    return task.info


def _clone_configure_start(template: Any, folder: Any, pool: Any, i: int,
                           wait: Callable[[Any], Any]) -> None:
    """Clone, reconfigure and power on machine ``i``; ``wait`` gives each task's
    ended info (the clone's carries the new VM)."""
    clone = template.CloneVM_Task(folder, f"node-{i:03d}", vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=pool), powerOn=False, config=_spec(i)))
    vm = wait(clone).result
    wait(vm.ReconfigVM_Task(_spec(i)))
    wait(vm.PowerOnVM_Task())


def run_bound(target: Target, machines: int, work: Path) -> Result:
    si = _connect(target)
    COUNTER.take()
    _TIMED.start()
    template, pool, folder = _place(si)

    def make(i: int) -> None:
        _clone_configure_start(template, folder, pool, i, _ended)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool_:
        list(pool_.map(make, range(machines)))
    delay = 0.05
    while (on := _powered_on(si, _names(machines))) < machines:
        time.sleep(delay)
        delay = min(1.0, delay * 2)
    return Result("bound", _TIMED.stop(), COUNTER.take(), on)


def run_pyvmomi(target: Target, machines: int, work: Path) -> Result:
    si = _connect(target)
    COUNTER.take()
    _TIMED.start()
    template, pool, folder = _place(si)
    for i in range(machines):
        _clone_configure_start(template, folder, pool, i, _waited)
    seconds = _TIMED.stop()
    calls = COUNTER.take()
    return Result("pyvmomi", seconds, calls, _powered_on(si, _names(machines)))


def run_talprov(target: Target, machines: int, work: Path) -> Result:
    runtime = Runtime(installation="bench", cache_dir=work / "cache")
    config = VSphereConfig.model_validate({
        "url": target.url, "username": target.server.user, "password": target.server.password,
        "ca_file": str(target.server.ca_file)})
    provider = VSphereProvider("vs-bench", config, runtime)
    provider.health()  # log in before the clock starts, as the others do
    store = Store(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    for i in range(machines):
        store.create_request(MachineRequest(
            id=f"node-{i:03d}", provider="vs-bench", talos_version="v1.11.5",
            machine_config=CONFIG.replace("bench", f"bench-{i}"),
            provider_data={"cluster": "DC0_C0", "template": TEMPLATE, "cpu": 2,
                           "memory": 2048}))
    handle = ProviderHandle(cast(Provider, provider), WORKERS)
    reconciler = Reconciler(store, {"vs-bench": handle}, runtime)
    COUNTER.take()
    _TIMED.start()
    # Counted in SQL after every pass, as bench/openstack_create.py does: reading
    # the records whole would be the bench's own CPU on talprov's clock.
    done = reconciler.run_until(
        lambda: store.count_requests().get(("vs-bench", Stage.PROVISIONED), 0) == machines,
        timeout=600, interval=config.poll_interval)
    seconds = _TIMED.stop()
    calls = COUNTER.take()
    reconciler.close()
    store.close()
    provider.close()
    if not done:
        bad = [(r.request.id, r.stage, r.error) for r in store.list_requests()
               if r.stage != Stage.PROVISIONED][:3]
        raise RuntimeError(f"talprov did not provision every machine: {bad}")
    return Result("talprov", seconds, calls, _powered_on(_connect(target), _names(machines)))


RUNNERS: dict[str, Callable[[Target, int, Path], Result]] = {
    "bound": run_bound, "talprov": run_talprov, "pyvmomi": run_pyvmomi,
}


class Stopwatch:
    """Wall and process CPU seconds of a tool's timed part."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> float:
        """Wall seconds since ``start``; ``cpu`` becomes the CPU seconds."""
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return self.wall


_TIMED = Stopwatch()
#: Process CPU seconds of each run's timed part, by (latency ms, tool).
CPU: dict[tuple[float, str], list[float]] = {}


def _run(name: str, latency_ms: float, folder: Path, machines: int) -> Result:
    """One tool on a fresh vcsim (with the template) behind a fresh proxy."""
    delays = {method: int(n * latency_ms) for method, n in TASK_LATENCIES.items()}
    server = start_vcsim(folder, method_delays=delays)
    proxy = ProxyProcess(server.port, latency_ms / 1000).start()
    try:
        target = Target(server, proxy)
        _make_template(target)
        result = RUNNERS[name](target, machines, folder)
        CPU.setdefault((latency_ms, name), []).append(_TIMED.cpu)
        return result
    finally:
        proxy.stop()
        server.stop()


def _show_cpu() -> None:
    print("\nprocess CPU seconds (min/median)")
    for (latency_ms, name), seconds in CPU.items():
        print(f"  {latency_ms:g} ms  {name:10}{min(seconds):8.3f}"
              f"{statistics.median(seconds):8.3f}")


def main(argv: list[str] | None = None) -> int:
    args = report.options(__doc__.splitlines()[0], list(RUNNERS), argv)
    code = report.compare(args, lambda _ms: None,
                          lambda name, ms, folder: _run(name, ms, folder, args.machines))
    _show_cpu()
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Load benchmark of the HTTP service: do the reconcile workers slow the API down?

Starts ``talprov serve`` on 127.0.0.1 (a free port) with the file-backed test
provider once per worker mode (``off``: an API-only replica; ``thread``: the
run loop in a thread of the API's process; ``process``: in a child process, the
default) and fires, at the same concurrency:

1. ``GET /healthz`` (routing, no auth, one trivial store read; nothing to
   reconcile yet);
2. ``POST /v1/machine-requests`` (auth, validation, an idempotent insert) -- the
   workers start provisioning these at once;
3. ``GET /v1/machine-requests/{id}`` of the requests just made, while the
   workers provision them.

It prints p50/p99/max latency, errors and throughput of each phase and mode,
then the goals' ratios: GET p99 with workers over GET p99 without (goal 1.5x),
and create p99 over healthz p99 (goal 1.5x), each the min and median over
``--runs`` runs (the modes take turns). Exits 1 on any error.

    .venv/bin/python bench/service_load.py [--requests 1000] [--concurrency 50]
        [--modes off,thread,process] [--runs 3] [--store URL] [--client raw|httpx]

Every call goes out through the lean client of bench/raw_http.py unless
``--client httpx``: on a machine with few cores httpx's 4-7 ms of CPU per call
is more than the API's own, and the load generator would measure itself.

``--scale`` measures instead how creation throughput grows from one ``serve``
process to two sharing one PostgreSQL store (a throw-away server from
tests/emulators/postgres.py, a fresh database per run): the same creations,
spread over the processes' URLs in turn, three runs of each, min and median of
the throughput, and the ratio of the medians (the goal is 1.7 or more; it needs
at least as many free cores as processes plus the database's). ``--no-workers``
makes those API-only processes. Each run also prints the CPU seconds its
processes spent per 1,000 creations (the API processes, their worker children,
PostgreSQL, this client) and how many of the machine's cores they kept busy:
when that is all of them, the run was bound by CPU, not by the design.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import raw_http  # noqa: E402
from tests.helpers import WORKER_CONFIG, write_plugin_dist  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    seconds: float
    #: What each error was: an HTTP status or an httpx exception class, with a count.
    kinds: dict[str, int] = field(default_factory=dict)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        ok = len(self.latencies)
        return (f"{self.name:<28} ok={ok:<5} errors={self.errors:<4} "
                f"p50={self.quantile(0.5) * 1000:8.1f} ms  p99={self.quantile(0.99) * 1000:8.1f} ms"
                f"  max={max(self.latencies, default=0) * 1000:8.1f} ms"
                f"  mean={statistics.fmean(self.latencies) * 1000 if ok else 0:7.1f} ms"
                f"  {(ok + self.errors) / self.seconds:7.0f} req/s"
                + (f"  {self.kinds}" if self.kinds else ""))


def start_server(
    root: Path, *, mode: str, store: str | None
) -> tuple[subprocess.Popen[str], str]:
    """``talprov serve`` on a free port; returns the process and its URL."""
    plugins = write_plugin_dist(root / "plugins")
    config = {
        "store": store or f"sqlite:///{root / 'state.db'}",
        "cache_dir": str(root / "cache"),
        "providers": {"fake": {"type": "file", "path": str(root / "cloud.sqlite"),
                               "boot_listings": 1, "concurrency": 8}},
        "service": {"tokens": [{"name": "bench", "value": TOKEN, "access": "write"}],
                    "reconcile_interval": 0.5, "workers": mode != "off",
                    "worker_mode": "thread" if mode == "thread" else "process"},
    }
    (root / "talprov.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)]),
           "TALPROV_CONFIG": str(root / "talprov.yaml"), "HOME": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "talprov", "serve", "--listen", "127.0.0.1:0"],
        env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    url = ""
    deadline = time.monotonic() + 30
    for line in process.stdout:
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            break
        if time.monotonic() > deadline:
            break
    if not url:
        process.kill()
        raise SystemExit("talprov serve did not start")
    # Keep draining its output so that a full pipe never blocks the server.
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    return process, url


async def fire(name: str, count: int, concurrency: int,
               call: Callable[[int], Awaitable[httpx.Response]]) -> Result:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}

    async def one(index: int) -> None:
        nonlocal errors
        async with gate:
            started = time.perf_counter()
            try:
                response = await call(index)
            except httpx.HTTPError as exc:
                errors += 1
                kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
                return
            if response.status_code >= 300:
                errors += 1
                kind = f"{response.status_code} {response.text[:80]}"
                kinds[kind] = kinds.get(kind, 0) + 1
                return
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return Result(name, latencies, errors, time.perf_counter() - began, kinds)


def load_body(index: int) -> dict[str, Any]:
    return {"id": f"bench-{index:05d}", "provider": "fake", "talos_version": "v1.13.9",
            "config": WORKER_CONFIG, "labels": {"role": "worker", "bench": "load"},
            "provider_data": {"size": "small"}}


async def run(url: str, count: int, concurrency: int, mode: str, *, lean: bool) -> list[Result]:
    """The three phases against ``url``: through bench/raw_http.py when ``lean``."""
    if lean:
        def lean_phase(name: str, request: Callable[[int, str], bytes]) -> Awaitable[Result]:
            async def measured() -> Result:
                outcome, seconds = await raw_http.send_all([url], count, concurrency, request)
                return Result(f"{mode:<8} {name}", outcome.latencies,
                              sum(outcome.errors.values()), seconds, outcome.errors)
            return measured()

        await lean_phase("warm-up", lambda _i, u: raw_http.get_bytes(u, "/healthz"))
        return [
            await lean_phase("GET /healthz", lambda _i, u: raw_http.get_bytes(u, "/healthz")),
            await lean_phase("POST request", lambda i, u: raw_http.post_bytes(
                u, "/v1/machine-requests", load_body(i), AUTH)),
            await lean_phase("GET request", lambda i, u: raw_http.get_bytes(
                u, f"/v1/machine-requests/bench-{i:05d}", AUTH)),
        ]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        # Warm-up: connections, imports, the first store access.
        await fire("warm-up", 50, concurrency, lambda _i: client.get("/healthz"))
        healthz = await fire(f"{mode:<8} GET /healthz", count, concurrency,
                             lambda _i: client.get("/healthz"))
        creations = await fire(f"{mode:<8} POST request", count, concurrency,
                               lambda i: client.post("/v1/machine-requests", json=load_body(i),
                                                     headers=AUTH))
        reads = await fire(f"{mode:<8} GET request", count, concurrency,
                           lambda i: client.get(f"/v1/machine-requests/bench-{i:05d}",
                                                headers=AUTH))
    return [healthz, creations, reads]


def healthz(client: httpx.AsyncClient, _index: int) -> Awaitable[httpx.Response]:
    return client.get("/healthz")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found + [d for c in found for d in _children(c)]


def tree_cpu(pid: int, *, itself: bool = True, descendants: bool = True) -> float:
    """CPU seconds (user + system) of process ``pid`` and/or of its descendants
    (Linux's /proc), including those of their children that already exited and
    were waited for (PostgreSQL's backends)."""
    pids = ([pid] if itself else []) + (_children(pid) if descendants else [])
    ticks = 0
    for one in pids:
        with contextlib.suppress(OSError):
            # utime, stime, cutime, cstime: fields 14-17 of stat(5).
            ticks += sum(int(v) for v in _stat(one)[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_role(servers: list[int], postgres: int) -> dict[str, float]:
    """CPU seconds so far of the API processes, their children (the reconcile
    workers), the PostgreSQL server and this client."""
    own = os.times()
    return {"api": sum(tree_cpu(pid, descendants=False) for pid in servers),
            "workers": sum(tree_cpu(pid, itself=False) for pid in servers),
            "postgres": tree_cpu(postgres),
            "client": own.user + own.system}


def cpu_line(before: dict[str, float], after: dict[str, float], result: Result,
             processes: int) -> str:
    """CPU seconds per 1,000 creations by role, the cores they kept busy, how busy
    each API process was (near 100 %: the API's interpreter is the limit; far
    below: something else, e.g. CPU taken by other programs), and the reconcile
    rounds the workers ran meanwhile."""
    spent = {role: after[role] - before[role] for role in before if role != ROUNDS}
    per_k = 1000 / max(1, len(result.latencies))
    parts = "  ".join(f"{role} {seconds * per_k:5.2f}" for role, seconds in spent.items())
    busy = sum(spent.values()) / result.seconds
    api_busy = spent["api"] / processes / result.seconds
    return (f"       CPU s per 1000 creates: {parts}  total "
            f"{sum(spent.values()) * per_k:5.2f}; {busy:.2f} of {os.cpu_count()} cores busy;"
            f" each API process {api_busy:.0%} of a core;"
            f" {after[ROUNDS] - before[ROUNDS]:.0f} reconcile rounds")


ROUNDS = "rounds"


def cpu_per_create(before: dict[str, float], after: dict[str, float], result: Result) -> float:
    """CPU seconds of every process of the run (all roles) per creation."""
    spent = sum(after[role] - before[role] for role in before if role != ROUNDS)
    return spent / max(1, len(result.latencies))


def ceiling_line(processes: int, rates: list[float], cpu_costs: list[float]) -> str:
    """What the machine's cores allow at the CPU each creation cost (medians):
    a rate near that ceiling is bound by the cores, not by talprov."""
    cores = os.cpu_count() or 1
    cost = statistics.median(cpu_costs)
    ceiling = cores / cost
    return (f"{processes} process(es): {cost * 1000:.2f} ms of CPU per create (median): "
            f"{cores} cores allow at most {ceiling:.0f} creates/s; "
            f"reached {statistics.median(rates) / ceiling:.0%}")


async def rounds_so_far(clients: list[httpx.AsyncClient]) -> float:
    """Reconcile rounds the servers' workers have run (their /metrics)."""
    total = 0.0
    for client in clients:
        text = (await client.get("/metrics", headers=AUTH)).text
        total += sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("talprov_reconcile_passes_total "))
    return total


async def creations_per_second(urls: list[str], count: int, concurrency: int, prefix: str,
                               measure: Callable[[], dict[str, float]], *, lean: bool
                               ) -> tuple[Result, dict[str, float], dict[str, float]]:
    """``count`` creations at ``concurrency``, spread over ``urls``, and
    ``measure()`` just before and just after them; sent with the lean client of
    bench/raw_http.py when ``lean``, else with httpx."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=60) for url in urls]
    try:
        for client in clients:  # warm-up: connections, imports, the first store access
            await fire("warm-up", 20, concurrency, partial(healthz, client))

        def body(index: int) -> dict[str, Any]:
            return {"id": f"{prefix}-{index:05d}", "provider": "fake",
                    "talos_version": "v1.13.9", "config": WORKER_CONFIG,
                    "labels": {"role": "worker", "bench": "scale"}}

        def create(index: int) -> Awaitable[httpx.Response]:
            return clients[index % len(clients)].post("/v1/machine-requests",
                                                      json=body(index), headers=AUTH)

        before = {**measure(), ROUNDS: await rounds_so_far(clients)}
        name = f"{len(urls)} process(es)"
        if lean:
            outcome, seconds = await raw_http.send_all(
                urls, count, concurrency,
                lambda i, url: raw_http.post_bytes(url, "/v1/machine-requests", body(i), AUTH))
            result = Result(name, outcome.latencies, sum(outcome.errors.values()), seconds,
                            outcome.errors)
        else:
            result = await fire(name, count, concurrency, create)
        return result, before, {**measure(), ROUNDS: await rounds_so_far(clients)}
    finally:
        for client in clients:
            await client.aclose()


def scale(count: int, concurrency: int, mode: str, *, lean: bool, runs: int = 3) -> None:
    """Creation throughput of one and of two processes on one PostgreSQL store."""
    from tests.emulators.postgres import start_postgres

    with tempfile.TemporaryDirectory(prefix="talprov-scale-", dir="/tmp") as tmp:
        root = Path(tmp)
        if os.geteuid() == 0:  # the server may run as another user: let it in
            root.chmod(0o755)
        (root / "pg").mkdir()
        server = start_postgres(root / "pg")
        rates: dict[int, list[float]] = {1: [], 2: []}
        cpu_costs: dict[int, list[float]] = {1: [], 2: []}
        errors = 0
        try:
            for run_index in range(runs):
                for processes in (1, 2):
                    database = f"scale_{run_index}_{processes}"
                    server.admin_execute(f'CREATE DATABASE "{database}"')
                    started = [start_server(root / f"{database}-{n}", mode=mode,
                                            store=server.url(database))
                               for n in range(processes)]
                    measure = partial(cpu_by_role, [p.pid for p, _ in started],
                                      server.process.pid)
                    try:
                        result, before, after = asyncio.run(creations_per_second(
                            [url for _, url in started], count, concurrency,
                            database.replace("_", "-"), measure, lean=lean))
                    finally:
                        for process, _ in started:
                            process.terminate()
                            process.wait(timeout=60)
                    rates[processes].append(len(result.latencies) / result.seconds)
                    cpu_costs[processes].append(cpu_per_create(before, after, result))
                    errors += result.errors
                    print(f"run {run_index + 1}: {result.line()}", flush=True)
                    print(cpu_line(before, after, result, processes), flush=True)
        finally:
            server.stop()
    for processes, values in rates.items():
        print(f"{processes} process(es): min {min(values):.0f}  median "
              f"{statistics.median(values):.0f} creates/s")
    for processes, values in rates.items():
        print(ceiling_line(processes, values, cpu_costs[processes]))
    ratio = statistics.median(rates[2]) / statistics.median(rates[1])
    print(f"two processes / one (medians): {ratio:.2f}x  (goal >= 1.7x; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    # 1.7x one process's rate at two processes' CPU per create: the cores that takes.
    needed = (1.7 * statistics.median(rates[1]) * statistics.median(cpu_costs[2]))
    print(f"1.7x one process's rate at two processes' CPU per create needs {needed:.1f} "
          f"cores busy (this machine: {os.cpu_count()})")
    if errors:
        raise SystemExit(f"{errors} creations failed")


def ratio_line(mode: str, runs: list[dict[str, list[Result]]]) -> str:
    """The goals' ratios of ``mode``, min and median over the runs (each ratio
    within one run: its phases ran on the same server, minutes apart at most)."""

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f}x / {statistics.median(values):.2f}x"

    creates = [r[mode][1].quantile(0.99) / r[mode][0].quantile(0.99) for r in runs]
    line = f"{mode:<8} create p99 / healthz p99 (min / median): {spread(creates)}"
    if mode != "off" and all("off" in r for r in runs):
        reads = [r[mode][2].quantile(0.99) / r["off"][2].quantile(0.99) for r in runs]
        line += f"   GET p99 / GET p99 without workers: {spread(reads)}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--modes", default="off,thread,process",
                        help="Worker modes to compare, in order (off, thread, process).")
    parser.add_argument("--store", help="Store URL (default: a fresh SQLite file per mode).")
    parser.add_argument("--runs", type=int, default=3,
                        help="Runs of every mode (min and median of the ratios).")
    parser.add_argument("--scale", action="store_true",
                        help="One vs two processes on one PostgreSQL store (creations/s).")
    parser.add_argument("--no-workers", action="store_true",
                        help="With --scale: API-only processes.")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="The client: raw (bench/raw_http.py, little CPU, the default) "
                        "or httpx (about 5-7 ms of CPU per call).")
    args = parser.parse_args()
    if args.scale:
        scale(args.requests, args.concurrency, mode="off" if args.no_workers else "process",
              lean=args.client == "raw", runs=args.runs)
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs: list[dict[str, list[Result]]] = []
    for _ in range(args.runs):
        results: dict[str, list[Result]] = {}
        for mode in modes:  # the modes in turn, so that a noisy minute hits all of them
            with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
                process, url = start_server(Path(tmp), mode=mode, store=args.store)
                try:
                    results[mode] = asyncio.run(run(url, args.requests, args.concurrency, mode,
                                                    lean=args.client == "raw"))
                finally:
                    process.terminate()
                    process.wait(timeout=60)
        runs.append(results)
    print(f"talprov serve: {args.requests} requests per phase, concurrency {args.concurrency}, "
          f"{args.runs} run(s); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for number, results in enumerate(runs, start=1):
        for mode in modes:
            for result in results[mode]:
                print(f"run {number}: {result.line()}")
    errors = sum(r.errors for results in runs for rs in results.values() for r in rs)
    for mode in modes:
        print(ratio_line(mode, runs))
    print(f"errors: {errors}")
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

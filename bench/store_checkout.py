"""Benchmark: what checking a pooled PostgreSQL connection costs a store transaction.

Run: ``.venv/bin/python bench/store_checkout.py [--latency-ms 0 2] [--calls 300] [--repeat 5]``.

A real PostgreSQL (tests/emulators/postgres.py), reached over loopback TCP through
a proxy that adds ``latency`` to every round trip (tests/emulators/latency.py), or
through its Unix socket for latency 0. Per configuration, the time of one store
read transaction (``lease_holder``) and of one claim plus release (two write
transactions), min and median of ``--repeat`` runs of ``--calls`` calls (runs of
the configurations interleaved), and on the Unix socket the statements the
server logged per call (``log_statement = all``: each one a round trip):

- ``pre_ping``: the engine as it was, SQLAlchemy's ``pool_pre_ping`` (a
  ``SELECT 1`` round trip at every checkout);
- ``talprov``: the engine now (a zero-timeout poll of the socket at checkout,
  connections recycled after RECYCLE_SECONDS);
- ``bound``: psycopg alone on one open connection, ``BEGIN``, ``SELECT 1``,
  ``COMMIT``: the round trips any transaction through psycopg costs at least.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from talprov.demo_platforms.aws import free_port  # noqa: E402
from talprov.providers.types import MachineRequest  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from tests.emulators.latency import ProxyProcess  # noqa: E402
from tests.emulators.postgres import PostgresServer, start_postgres  # noqa: E402


def _per_call(call: Callable[[], object], calls: int) -> float:
    """Milliseconds per call over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1000


def _store(url: str, *, pre_ping: bool) -> Store:
    store = Store(url)
    if pre_ping:
        engine_url = store._engine.url
        store._engine.dispose()
        store._engine = sa.create_engine(engine_url, hide_parameters=True, pool_pre_ping=True)
    return store


def _read(store: Store) -> Callable[[], object]:
    return lambda: store.lease_holder("r-1")


def _write(store: Store) -> Callable[[], object]:
    def claim_and_release() -> None:
        store.claim("r-1", owner="w", ttl=60)
        store.release("r-1", owner="w")

    return claim_and_release


def _statements(server: PostgresServer, call: Callable[[], object], calls: int) -> float:
    """Statements the server ran per call (each one a round trip), from its log."""
    assert server.workdir is not None
    log = server.workdir / "postgres.log"
    server.admin_execute("ALTER SYSTEM SET log_statement = 'all'")
    server.admin_execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    before = log.read_text(errors="replace").count("LOG:  ")
    for _ in range(calls):
        call()
    time.sleep(0.5)
    ran = log.read_text(errors="replace").count("LOG:  ") - before
    server.admin_execute("ALTER SYSTEM RESET log_statement")
    server.admin_execute("SELECT pg_reload_conf()")
    return ran / calls


def _measure(url: str, raw: Mapping[str, Any], calls: int, repeat: int,
             server: PostgresServer | None) -> None:
    stores = {"pre_ping": _store(url, pre_ping=True), "talprov": _store(url, pre_ping=False)}
    conn = psycopg.connect(**raw)

    def bound() -> None:
        with conn.transaction():
            conn.execute("SELECT 1")

    def bound_twice() -> None:
        bound()
        bound()

    calls_of = {
        "read tx": {name: _read(store) for name, store in stores.items()} | {"bound": bound},
        "claim+release": {name: _write(store) for name, store in stores.items()}
        | {"bound": bound_twice},
    }
    try:
        for what, configurations in calls_of.items():
            runs: dict[str, list[float]] = {name: [] for name in configurations}
            for call in configurations.values():
                call()  # connections made
            for _ in range(repeat):  # interleaved, so that load on the host hits all alike
                for name, call in configurations.items():
                    runs[name].append(_per_call(call, calls))
            low = {name: min(times) for name, times in runs.items()}
            for name, times in runs.items():
                counted = (f"  {_statements(server, configurations[name], 20):4.1f} "
                           "statements/call" if server is not None else "")
                print(f"  {what:14s} {name:9s} min {low[name]:7.3f} ms  median "
                      f"{statistics.median(times):7.3f} ms  x bound "
                      f"{low[name] / low['bound']:5.2f}{counted}")
            saved = low["pre_ping"] - low["talprov"]
            print(f"  {what}: talprov saves {saved:.3f} ms per call "
                  f"({saved / low['pre_ping'] * 100:.0f}% of pre_ping)")
    finally:
        conn.close()
        for store in stores.values():
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 2.0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="talprov-bench-pg-", dir="/tmp") as folder:
        server = start_postgres(Path(folder), tcp_port=free_port())
        try:
            server.admin_execute("CREATE DATABASE bench")
            setup = Store(server.url("bench"))
            setup.migrate()
            setup.create_request(MachineRequest(id="r-1", provider="p",
                                                talos_version="v1.13.9"))
            setup.close()
            for latency in args.latency_ms:
                if latency == 0:
                    print("Unix socket, no added latency:")
                    raw = {"host": str(server.socket_dir), "port": server.tcp_port,
                           "user": "talprov", "dbname": "bench"}
                    _measure(server.url("bench"), raw, args.calls, args.repeat, server)
                    continue
                assert server.tcp_port is not None
                proxy = ProxyProcess(server.tcp_port, latency / 1000).start()
                try:
                    print(f"TCP with {latency:g} ms per round trip:")
                    url = f"postgresql+psycopg://talprov@127.0.0.1:{proxy.port}/bench"
                    raw = {"host": "127.0.0.1", "port": proxy.port, "user": "talprov",
                           "dbname": "bench"}
                    _measure(url, raw, max(20, args.calls // 10), args.repeat, None)
                finally:
                    proxy.stop()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two ``talprov serve`` replicas on a PostgreSQL server of their own.

The server is private to the test (not the session's shared one) because the
scenarios crash and restart it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.emulators.postgres import PostgresServer, start_postgres
from tests.helpers import Home
from tests.unit.service.conftest import READ, TOKENS, WRITE
from tests.unit.service.serving import ServeProcess

NAMES = ("alpha", "beta")
#: What an API call may answer while the store is away: 503 and nothing else.
STORE_AWAY = 503


@contextlib.contextmanager
def private_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL server of its own with one database; the URL of that database."""
    workdir = Path(tempfile.mkdtemp(prefix="talprov-chaospg-", dir="/tmp"))
    try:
        server = start_postgres(workdir, durable=True)
        try:
            server.admin_execute('CREATE DATABASE "chaos"')
            yield server, server.url("chaos")
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def replica_config(home: Home, store_url: str, **service: Any) -> None:
    """talprov.yaml for the replicas: the store, the fake provider, short leases."""
    home.write_config(store=store_url, service={
        "tokens": TOKENS, "reconcile_interval": 0.1, "lease_ttl": 3, "query_timeout": 5,
        **service})


class Replicas:
    """The two replicas by name; ``restart`` SIGKILLs one and starts it again.

    With ``named`` each gets ``--worker-id replica-<name>`` (kept across its
    restarts); without, the default ``host:pid``, so a restarted replica is a new
    worker and finds the dead one's leases through the dead-process check.
    """

    def __init__(self, env: dict[str, str], cwd: Path, *, named: bool = True) -> None:
        self.env, self.cwd, self.named = env, cwd, named
        self.servers: dict[str, ServeProcess] = {}
        self.clients: dict[str, httpx.Client] = {}
        self.outputs: list[str] = []
        self._starting: list[threading.Thread] = []
        for name in NAMES:
            self._start(name)

    def _start(self, name: str) -> None:
        args = ["--worker-id", f"replica-{name}"] if self.named else []
        server = ServeProcess(self.env, self.cwd, args)
        self.servers[name] = server
        self.clients[name] = httpx.Client(base_url=server.url, timeout=30)

    def restart(self, name: str, *, wait: bool = True) -> None:
        """SIGKILL (no clean-up at all), then a new process (under the same worker id
        when ``named``). Without ``wait`` the new process starts in the background
        while the other replica serves alone; :meth:`started` waits for it."""
        self.clients.pop(name).close()
        server = self.servers.pop(name)
        server.kill()
        self.outputs.append(server.output())
        if wait:
            self._start(name)
            return
        starter = threading.Thread(target=self._start, args=(name,), daemon=True)
        starter.start()
        self._starting.append(starter)

    def started(self) -> None:
        """Wait for the replicas restarting in the background."""
        while self._starting:
            self._starting.pop().join(timeout=120)

    def close(self) -> list[int]:
        """SIGTERM both; their exit codes. Every output lands in ``outputs``."""
        self.started()
        codes = []
        for name in list(self.servers):
            self.clients.pop(name).close()
            server = self.servers.pop(name)
            codes.append(server.terminate())
            self.outputs.append(server.output())
        return codes

    def tracebacks(self) -> list[str]:
        return [text[-3000:] for text in self.outputs if "Traceback" in text]


def metric(client: httpx.Client, name: str) -> float:
    """The sum of a metric's samples in this replica's /metrics."""
    text = client.get("/metrics", headers=READ).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


def create_until_stored(client: httpx.Client, body: dict[str, Any],
                        statuses: list[tuple[str, int]], timeout: float = 60.0) -> None:
    """POST ``body`` until it is stored (201, or 200 for a retry that finds it),
    sending the same id again after each 503, as a client should; every answer is
    appended to ``statuses`` as (id, status), 0 for a connection that broke. A
    status other than 200/201/503 ends the attempts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = client.post("/v1/machine-requests", json=body, headers=WRITE).status_code
        except httpx.TransportError:
            status = 0  # the replica was killed under this call
        statuses.append((body["id"], status))
        if status in (200, 201) or status not in (0, STORE_AWAY) or (
                time.monotonic() > deadline):
            return
        time.sleep(0.2)


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` until true or ``timeout``; whether it became true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True

"""The PostgreSQL server goes away under load and comes back.

Two ``talprov serve`` replicas share a PostgreSQL store while a client creates
requests through both. The server is stopped twice: once as ``pg_ctl restart``
does (a fast shutdown: backends terminated, then a new postmaster), once by
SIGKILL of the postmaster (crash recovery at the next start). While it is away
the API must answer 503 (never a 500, never a traceback); afterwards both
replicas must work again by themselves, with no process restarted, and every
request must end with exactly one machine.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import httpx

from tests.chaos.replicas import (
    NAMES,
    STORE_AWAY,
    Replicas,
    create_until_stored,
    metric,
    private_postgres,
    replica_config,
    wait_for,
)
from tests.helpers import SEEN_OUTPUT, Home
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import READ, WRITE, request_body
from tests.unit.service.serving import ServeProcess

OUTAGE_SECONDS = 2.0


def stored_count(answers: list[tuple[str, int]]) -> int:
    return sum(status in (200, 201) for _, status in answers)


def test_replicas_ride_out_postgres_restarts_without_duplicates(home: Home) -> None:
    home.providers["fake"].update(boot_listings=3, concurrency=4)
    with private_postgres() as (postgres, store_url):
        replica_config(home, store_url)
        replicas = Replicas(home.env(), home.root)
        pids = {name: replicas.servers[name].process.pid for name in NAMES}
        answers: list[tuple[str, int]] = []
        numbers = count()
        stop = threading.Event()

        def load() -> None:
            # Creations alternate between the replicas until told to stop.
            while not stop.is_set():
                n = next(numbers)
                client = replicas.clients[NAMES[n % 2]]
                create_until_stored(client, request_body(f"load-{n:03d}"), answers)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        outages: list[dict[str, object]] = []
        try:
            for outage in ("fast-shutdown", "crash"):
                assert wait_for(lambda: stored_count(answers) >= 8 + 8 * len(outages), 60)
                if outage == "crash":
                    postgres.crash()
                else:
                    postgres.stop()
                away = {name: replicas.clients[name].post(
                    "/v1/machine-requests", headers=WRITE,
                    json=request_body(f"away-{outage}-{name}")) for name in NAMES}
                health = {name: replicas.clients[name].get("/healthz").status_code
                          for name in NAMES}
                listing = replicas.clients["alpha"].get("/v1/machine-requests", headers=READ)
                stop.wait(OUTAGE_SECONDS)
                postgres.start_again()
                # Back at once: the first calls after the restart find no stale
                # pooled connection (a 503 here would be a dead connection reused).
                back = {name: replicas.clients[name].post(
                    "/v1/machine-requests", headers=WRITE,
                    json=request_body(f"back-{outage}-{name}")).status_code for name in NAMES}
                outages.append({"outage": outage, "health": health, "back": back,
                                "away": {n: (r.status_code, r.json()) for n, r in away.items()},
                                "listing": listing.status_code,
                                "passes": {n: metric(replicas.clients[n],
                                                     "talprov_reconcile_passes_total")
                                           for n in NAMES}})
            stored_after = stored_count(answers) + 8
            assert wait_for(lambda: stored_count(answers) >= stored_after, 60), answers
            stop.set()
            loader.join(timeout=90)
            created = sorted({item["id"] for item in replicas.clients["alpha"].get(
                "/v1/machine-requests", headers=READ).json()["items"]})

            def all_provisioned() -> bool:
                items = replicas.clients["beta"].get("/v1/machine-requests",
                                                     headers=READ).json()["items"]
                return {i["stage"] for i in items} == {"provisioned"}

            assert wait_for(all_provisioned, 90), "requests stuck after the restarts"
            # Both replicas' loops run again: passes counted after the last outage.
            passes_now = {n: metric(replicas.clients[n], "talprov_reconcile_passes_total")
                          for n in NAMES}
            alive = {name: replicas.servers[name].process.poll() is None for name in NAMES}
            same_pids = {name: replicas.servers[name].process.pid == pids[name]
                         for name in NAMES}
        finally:
            stop.set()
            codes = replicas.close()
        SEEN_OUTPUT.append(str(outages))
        for record in outages:
            assert record["health"] == {"alpha": 503, "beta": 503}, record
            assert record["listing"] == STORE_AWAY, record
            assert record["back"] == {"alpha": 201, "beta": 201}, record
            for status, body in record["away"].values():  # type: ignore[attr-defined]
                assert status == STORE_AWAY, record
                assert "store" in body["detail"], record
        assert alive == {"alpha": True, "beta": True}
        assert same_pids == {"alpha": True, "beta": True}, "a replica was restarted"
        last_passes = outages[-1]["passes"]
        assert all(passes_now[n] > last_passes[n] for n in NAMES), (  # type: ignore[index]
            last_passes, passes_now)
        statuses = Counter(status for _, status in answers)
        assert set(statuses) <= {200, 201, STORE_AWAY}, statuses
        assert statuses[STORE_AWAY], "the load never met the outage"
        acknowledged = {i for i, status in answers if status in (200, 201)}
        assert not acknowledged - set(created), "an acknowledged create is missing from the store"
        assert not replicas.tracebacks(), replicas.tracebacks()
        assert codes == [0, 0]
        machines = Counter(m["request_id"] for m in Cloud(home.cloud_path()).machines())
        assert sorted(machines) == created
        assert set(machines.values()) == {1}, "a request got two machines"


def test_an_idle_replica_answers_at_once_after_a_postgres_restart(home: Home) -> None:
    # No loop and no calls while the server is away, so nothing has found the
    # pooled connections broken yet: the first call after the restart must not
    # get one of them (a 503 for a database that is back).
    with private_postgres() as (postgres, store_url):
        replica_config(home, store_url, workers=False)
        server = ServeProcess(home.env(), home.root)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                # Several connections into the pool, all idle afterwards.
                with ThreadPoolExecutor(4) as pool:
                    warm = list(pool.map(lambda n: client.post(
                        "/v1/machine-requests", headers=WRITE,
                        json=request_body(f"idle-{n}")).status_code, range(8)))
                assert warm == [201] * 8
                postgres.crash()
                postgres.start_again()
                first = [client.get("/v1/machine-requests/idle-0", headers=READ).status_code,
                         client.post("/v1/machine-requests", headers=WRITE,
                                     json=request_body("idle-after")).status_code]
        finally:
            code = server.terminate()
        assert first == [200, 201], server.output()[-3000:]
        assert code == 0

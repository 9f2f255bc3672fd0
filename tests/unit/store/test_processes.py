"""Two real processes on one store: migrations, creates, progress and leases race."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from talprov.providers.types import Stage
from talprov.store import Store
from talprov.store.upgrade import head_revision, status
from tests.emulators.postgres import PostgresServer
from tests.unit.store import _workers

WORKERS = ("alpha", "beta")
COUNT = 15
ROUNDS = 25


def run_workers(url: str) -> dict[str, dict[str, Any]]:
    """One spawned process per worker name, kept in step by a barrier."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(WORKERS))
    queue = ctx.Queue()
    processes = [
        ctx.Process(
            target=_workers.race_everything,
            args=(url, name, barrier, queue),
            kwargs={"count": COUNT, "rounds": ROUNDS},
        )
        for name in WORKERS
    ]
    for process in processes:
        process.start()
    try:
        results = dict(queue.get(timeout=180) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    for name, outcome in results.items():
        assert isinstance(outcome, dict), (name, outcome)
    return results


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def raced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A store that the two workers raced on (from an empty database), and their results."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('raced') / 'state.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        server.admin_execute('CREATE DATABASE "raced"')
        url = server.url("raced")
    return url, run_workers(url)


def test_concurrent_migrations_and_creates_all_land_once(
    raced: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    url, _ = raced
    with Store(url) as store:
        store.migrate()  # already done by the workers: nothing left to do
        assert status(store._engine).current == head_revision()
        ids = {r.id for r in store.list_requests(labels={"made-by": "worker"})}
        shared = [*_workers.shared_ids(COUNT), _workers.CONTESTED]
        assert ids == {*shared, *(f"{w}-{s}" for w in WORKERS for s in shared)}
        # Both processes created each shared id; the second create was a no-op.
        for request_id in _workers.shared_ids(COUNT):
            assert [e.message for e in store.events(request_id)] == ["request created"]


def test_concurrent_progress_writes_never_lose_one(
    raced: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    url, results = raced
    total_wins = sum(r["wins"] for r in results.values())
    assert total_wins >= 1
    with Store(url) as store:
        final = store.get_request(_workers.CONTESTED)
        assert final is not None
        assert final.stage == Stage.PROVISIONING
        # Every successful write moved exactly one step on from what it had read.
        assert final.step_index == total_wins
        assert final.version == 1 + total_wins
        lines = [e.message for e in store.events(_workers.CONTESTED)][1:]
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == list(range(1, total_wins + 1))


def test_concurrent_claims_give_each_lease_to_exactly_one(
    raced: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    _, results = raced
    won = [set(results[name]["claimed"]) for name in WORKERS]
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == set(_workers.shared_ids(COUNT))

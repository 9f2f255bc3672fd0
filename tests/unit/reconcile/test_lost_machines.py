"""A provisioned machine that vanishes outside talprov: counted across processes, logged.

`talprov reconcile --once` (cron) and `apply --wait` run a fresh reconciler per
process, so the count of listings that missed a machine must live in the store,
not in one reconciler's memory; one wrong listing must still not fail a machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from talprov.providers.types import Stage
from talprov.reconcile.observing import MISSING_PASSES_BEFORE_LOST
from talprov.reconcile.retry import retry_failed
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.unit.reconcile.test_reconciler import all_in, make_reconciler, request, settle


def _stage(store: Store, rid: str) -> Stage:
    record = store.get_request(rid)
    assert record is not None
    return record.stage


class World:
    """One provisioned request on the file cloud, and one-shot passes over it."""

    def __init__(self, store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path,
                 rid: str) -> None:
        self.store, self.clock, self.tmp_path, self.plugin_dir = store, clock, tmp_path, plugin_dir
        self.reconciler, self.cloud = make_reconciler(store, clock, tmp_path, plugin_dir)
        store.create_request(request(rid))
        settle(self.reconciler, store, all_in(store, Stage.PROVISIONED))

    def one_shot_pass(self) -> None:
        """What `talprov reconcile --once` does: a fresh process, one pass."""
        make_reconciler(self.store, self.clock, self.tmp_path, self.plugin_dir)[0].run_pass()

    def cloud_sql(self, *statements: str) -> None:
        with self.cloud.connect() as db:
            for statement in statements:
                db.execute(statement)


def test_one_shot_passes_notice_a_deleted_machine(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(store, clock, tmp_path, plugin_dir, "once-1")
    world.cloud_sql("DELETE FROM machines")
    caplog.set_level(logging.INFO, logger="talprov.stages")
    for _ in range(MISSING_PASSES_BEFORE_LOST - 1):
        world.one_shot_pass()
        assert _stage(store, "once-1") == Stage.PROVISIONED
    world.one_shot_pass()
    record = store.get_request("once-1")
    assert record is not None
    assert record.stage == Stage.FAILED
    assert "disappeared" in (record.error or "")
    lines = [r for r in caplog.records if r.name == "talprov.stages"
             and "once-1" in r.getMessage() and "provisioned -> failed" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert "disappeared" in lines[0].getMessage()


def test_a_listing_wrong_once_does_not_fail_the_machine(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path,
) -> None:
    world = World(store, clock, tmp_path, plugin_dir, "lag-1")
    world.cloud_sql("CREATE TABLE kept AS SELECT * FROM machines", "DELETE FROM machines")
    world.one_shot_pass()  # the wrong listing
    world.cloud_sql("INSERT INTO machines SELECT * FROM kept")
    world.one_shot_pass()  # seen again: the count starts over
    world.cloud_sql("DELETE FROM machines")
    for _ in range(MISSING_PASSES_BEFORE_LOST - 1):
        world.one_shot_pass()
        assert _stage(store, "lag-1") == Stage.PROVISIONED
    world.one_shot_pass()
    assert _stage(store, "lag-1") == Stage.FAILED


def test_a_retried_lost_machine_is_made_again(
    store: Store, clock: FakeClock, tmp_path: Path, plugin_dir: Path,
) -> None:
    world = World(store, clock, tmp_path, plugin_dir, "again-1")
    reconciler, cloud = world.reconciler, world.cloud
    lost_id = cloud.machines()[0]["infra_id"]
    world.cloud_sql("DELETE FROM machines")
    for _ in range(MISSING_PASSES_BEFORE_LOST):
        reconciler.run_pass()
    assert _stage(store, "again-1") == Stage.FAILED

    retried = retry_failed(store, "again-1", reconciler.now())
    assert retried.stage == Stage.PENDING
    assert retried.infra_id is None  # the vanished machine's id is not kept
    settle(reconciler, store, all_in(store, Stage.PROVISIONED))
    machines = cloud.machines()
    assert len(machines) == 1
    record = store.get_request("again-1")
    assert record is not None
    assert record.infra_id == machines[0]["infra_id"] != lost_id
    # Provisioned for real: the next listings find it, so it stays provisioned.
    for _ in range(MISSING_PASSES_BEFORE_LOST):
        reconciler.run_pass()
    assert _stage(store, "again-1") == Stage.PROVISIONED

"""A request set replaces a failed member, with a backoff, and says so.

QA found a set of 1 whose machine was terminated outside talprov sitting at
``machine_count`` 1 with its one member failed for good. A set is kept at its
size by working machines: a failed member is deleted and a fresh one created;
the next replacement waits longer each time (so a permanent error, a bad subnet,
does not loop hot) until a member provisions again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import Step, StepContext
from talprov.providers.types import MachineRequest, Stage, StepResult
from talprov.runloop import RunLoop
from talprov.sets import (
    REPLACEMENT_BACKOFF_BASE,
    RequestSet,
    SetRepository,
    reconcile_set,
    set_fingerprint,
)
from talprov.store.store import Store
from talprov.testing import FakeClock
from talprov.timestamps import rfc3339
from tests.unit.test_runloop import POLL, PollingProvider, world

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class BadSubnetProvider(PollingProvider):
    """Every create is refused for good, as AWS refuses an unknown subnet."""

    def steps(self) -> Sequence[Step]:
        return (Step("boot", self._refuse),)

    def _refuse(self, ctx: StepContext[Any, Any]) -> StepResult:
        raise InvalidRequest("InvalidSubnetID.NotFound: subnet-0bad does not exist")


def put_set(store: Store, name: str, count: int) -> RequestSet:
    template = MachineRequest(id="unused", provider="fake", talos_version="v1.11.5",
                              labels={"role": "worker"})
    return SetRepository(store).put(
        RequestSet(name, template, count, False, set_fingerprint(template, count), T0, T0))


def stages(store: Store, prefix: str) -> dict[str, Stage]:
    return {r.request.id: r.stage for r in store.list_requests(include_gone=True)
            if r.request.id.startswith(prefix)}


def rounds(loop: RunLoop, clock: FakeClock, count: int, step: float = POLL) -> None:
    for _ in range(count):
        report = loop.run_round()
        assert report.errors == []
        clock.sleep(step)


def test_a_member_whose_machine_vanished_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    provider = PollingProvider()
    loop, store, clock = world(tmp_path, provider)
    put_set(store, "cset", 1)
    rounds(loop, clock, 3)
    assert stages(store, "cset") == {"cset-0": Stage.PROVISIONED}

    del provider.machines["cset-0"]  # terminated outside talprov
    caplog.set_level(logging.INFO)
    rounds(loop, clock, 2)
    assert stages(store, "cset")["cset-0"] == Stage.FAILED
    rounds(loop, clock, 4)
    now = stages(store, "cset")
    assert now["cset-0"] in (Stage.DEPROVISIONING, Stage.GONE)
    assert now["cset-1"] == Stage.PROVISIONED
    view = SetRepository(store).get("cset")
    assert view is not None
    shown = view.public_view(SetRepository(store).members(view))
    # Visible: what failed and why, though the failed member itself is going.
    assert shown["last_failure"]["member"] == "cset-0"
    assert "disappeared" in shown["last_failure"]["error"]
    assert any(r.levelno == logging.WARNING and "cset-0" in r.getMessage()
               and "replac" in r.getMessage() for r in caplog.records)


def replaced(store: Store, name: str) -> int:
    """How many failed members the set has replaced since one last provisioned."""
    request_set = SetRepository(store).get(name)
    assert request_set is not None
    return 0 if request_set.replacements is None else request_set.replacements.failures


def test_a_permanent_error_is_replaced_with_a_growing_backoff(tmp_path: Path) -> None:
    loop, store, clock = world(tmp_path, BadSubnetProvider())
    put_set(store, "bad", 1)
    loop.run_round()
    assert stages(store, "bad") == {"bad-0": Stage.FAILED}
    loop.run_round()  # replaced at once: the first failure may be the machine's alone
    assert replaced(store, "bad") == 1
    assert Stage.FAILED in stages(store, "bad").values()
    for _ in range(5):  # the same moment: no replacement loop
        loop.run_round()
    assert replaced(store, "bad") == 1

    delay = REPLACEMENT_BACKOFF_BASE.total_seconds()
    clock.sleep(delay - 1)
    loop.run_round()
    assert replaced(store, "bad") == 1
    clock.sleep(1)
    loop.run_round()
    loop.run_round()
    assert replaced(store, "bad") == 2
    clock.sleep(delay)  # the third waits twice as long
    loop.run_round()
    assert replaced(store, "bad") == 2
    clock.sleep(delay)
    loop.run_round()
    assert replaced(store, "bad") == 3
    request_set = SetRepository(store).get("bad")
    assert request_set is not None
    assert request_set.replacements is not None
    assert "subnet-0bad" in request_set.replacements.last_error
    # One failed member at a time: the set never holds more than machine_count.
    assert len([s for s in stages(store, "bad").values() if s != Stage.GONE]) == 1


def test_replacements_count_members_and_the_backoff_doubles_per_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """QA: with machine_count 2 and a bad subnet both members were replaced in one
    round, both logged "replacement 1", and the set showed 1 after two."""
    loop, store, clock = world(tmp_path, BadSubnetProvider())
    put_set(store, "pair", 2)
    loop.run_round()
    assert stages(store, "pair") == {"pair-0": Stage.FAILED, "pair-1": Stage.FAILED}
    caplog.set_level(logging.WARNING, logger="talprov.sets")
    loop.run_round()
    assert replaced(store, "pair") == 2
    logged = sorted(r.getMessage().split("(replacement ")[1].split(";")[0]
                    for r in caplog.records if "(replacement " in r.getMessage())
    assert logged == ["1", "2"]
    request_set = SetRepository(store).get("pair")
    assert request_set is not None
    shown = request_set.public_view(SetRepository(store).members(request_set))
    assert shown["last_failure"]["replacements"] == 2
    # One round, one doubling: the second round waits the base delay, not 2x.
    delay = REPLACEMENT_BACKOFF_BASE.total_seconds()
    assert shown["last_failure"]["next_replacement_at"] == rfc3339(
        datetime.fromtimestamp(clock.now + delay, UTC))
    clock.sleep(delay)
    loop.run_round()
    loop.run_round()
    assert replaced(store, "pair") == 4


def test_a_set_being_deleted_replaces_nothing() -> None:
    with Store("sqlite://") as store:
        store.migrate()
        repo = SetRepository(store)
        stored = put_set(store, "gone", 1)
        reconcile_set(repo, stored, now=T0)
        member = store.get_request("gone-0")
        assert member is not None
        store.note_observed("gone-0", expected_version=member.version, stage=Stage.FAILED,
                            error="boom")
        deleting = repo.put(RequestSet(stored.name, stored.template, 1, True,
                                       stored.fingerprint, T0, T0 + timedelta(seconds=1)))
        changes = reconcile_set(repo, deleting, now=T0 + timedelta(seconds=1))
        assert changes.created == ()
        assert changes.deleted == ("gone-0",)

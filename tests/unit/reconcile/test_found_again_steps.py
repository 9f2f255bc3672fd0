"""Found-again steps (``Step.found_again``): a request done with one is stored together
with its next step's outcome, not on its own; waiting, failing, or stopping
before a step that needs the listing is stored as always."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from talprov.providers.batching import one_by_one
from talprov.providers.errors import Transient
from talprov.providers.protocol import Step, StepContext
from talprov.providers.types import Retry, Stage, StepResult
from talprov.reconcile.runner import RequestRunner
from talprov.reconcile.work import Work
from talprov.testing import MemoryProgressStorage
from tests.unit.reconcile.test_runner import Rig, creates, waits

Ctx = StepContext[Any, Any]


def looks_up(ctx: Ctx) -> StepResult:
    ctx.state.machine_uuid = f"found-{ctx.request.id}"
    ctx.event("found it")
    return None


def waits_for_some(ctx: Ctx) -> StepResult:
    return Retry(5, "not yet") if ctx.request.id == "slow" else None


def fails_for_some(ctx: Ctx) -> StepResult:
    if ctx.request.id == "bad":
        raise Transient("lookup failed")
    return looks_up(ctx)


def rig_of(*steps: Step, rids: tuple[str, ...] = ("a", "b")) -> Rig:
    rig = Rig(list(steps))
    for rid in rids:
        rig.add(rid)
    return rig


def test_a_found_again_step_is_stored_with_the_next_step() -> None:
    rig = rig_of(Step.batched("look", one_by_one(looks_up), found_again=True),
                 Step.batched("make", one_by_one(creates("vm"))),
                 Step.batched("wait", one_by_one(waits("booting"))))
    rig.run_pass("a", "b")
    # look and make in one write, then wait's Retry: two, not three.
    assert rig.storage.transactions == 2
    for rid in ("a", "b"):
        record = rig.record(rid)
        assert (record.step_name, record.version) == ("wait", 3)
        assert record.machine_uuid == f"found-{rid}"  # what look found, stored
        assert rig.storage.events[rid][:4] == [
            "provisioning started", "found it", "step look done", "made vm"]


def test_without_found_again_every_step_is_stored() -> None:
    rig = rig_of(Step.batched("look", one_by_one(looks_up)),
                 Step.batched("make", one_by_one(creates("vm"))),
                 Step.batched("wait", one_by_one(waits("booting"))))
    rig.run_pass("a", "b")
    assert rig.storage.transactions == 3


def test_a_found_again_step_that_waits_or_fails_is_stored_at_once() -> None:
    rig = rig_of(Step.batched("look", one_by_one(waits_for_some), found_again=True),
                 Step.batched("check", one_by_one(fails_for_some), found_again=True),
                 Step.batched("make", one_by_one(creates("vm"))),
                 rids=("slow", "bad", "fine"))
    rig.run_pass("slow", "bad", "fine")
    slow, bad, fine = rig.record("slow"), rig.record("bad"), rig.record("fine")
    assert (slow.step_name, slow.next_attempt_at is not None) == ("look", True)
    assert (bad.step_name, bad.error) == ("check", "check: lookup failed")
    assert fine.stage == Stage.PROVISIONED
    # slow's Retry, then bad's failure (look was stored with it), then fine's end.
    assert rig.storage.transactions == 3
    assert slow.version == bad.version == fine.version == 2


def parked_before_the_listing() -> tuple[Rig, RequestRunner, list[Work]]:
    """Requests a and b advanced without the listing: "look" (found again, needs
    none) done, parked before "make" (which needs it)."""
    rig = rig_of(Step.batched("look", one_by_one(looks_up), needs_listing=False,
                              found_again=True),
                 Step.batched("make", one_by_one(creates("vm"))))
    runner = rig.runner()
    works = [work for rid in ("a", "b")
             if (work := runner.prepare(rig.record(rid), None)) is not None]
    return rig, runner, runner.advance(works, listed=False)


def test_a_found_again_outcome_waits_for_the_listing_unstored() -> None:
    rig, runner, parked = parked_before_the_listing()
    # Parked before "make" with look's outcome unstored; it goes on once listed
    # and is stored with make's outcome.
    assert sorted(w.record.request.id for w in parked) == ["a", "b"]
    assert rig.storage.transactions == 0
    assert rig.record("a").stage == Stage.PENDING
    runner.advance(parked)
    assert rig.storage.transactions == 1
    record = rig.record("a")
    assert (record.stage, record.machine_uuid) == (Stage.PROVISIONED, "found-a")



def test_a_parked_outcome_is_stored_at_its_step_when_the_listing_failed() -> None:
    rig, runner, parked = parked_before_the_listing()
    runner.store_parked(parked)
    assert rig.storage.transactions == 1
    for rid in ("a", "b"):
        record = rig.record(rid)
        assert (record.stage, record.step_name) == (Stage.PROVISIONING, "make")
        assert record.machine_uuid == f"found-{rid}"
    runner.store_parked(parked)  # nothing left unstored: no write
    assert rig.storage.transactions == 1


def test_a_request_deleted_while_unstored_stops_before_a_step_that_needs_the_listing(
) -> None:
    made: list[str] = []
    storage: list[MemoryProgressStorage] = []

    def delete_a_meanwhile(ctx: Ctx) -> StepResult:
        if ctx.request.id == "a":  # the delete lands while the pass runs "look"
            (store,) = storage
            record = store.records["a"]
            store.records["a"] = dataclasses.replace(
                record, stage=Stage.DEPROVISIONING, version=record.version + 1)
        return looks_up(ctx)

    def make(ctx: Ctx) -> StepResult:
        made.append(ctx.request.id)
        return None

    rig = rig_of(Step.batched("look", one_by_one(delete_a_meanwhile), needs_listing=False,
                              found_again=True),
                 Step.batched("make", one_by_one(make), creates_machine=True))
    storage.append(rig.storage)
    rig.run_pass("a", "b")
    assert made == ["b"]  # nothing made for a deleted request
    assert rig.storage.version_reads == 1  # one read for the group, before "make"
    a = rig.record("a")
    # What "look" learned went into the deletion's record.
    assert (a.stage, a.state.get("machine_uuid")) == (Stage.DEPROVISIONING, "found-a")
    assert rig.record("b").stage == Stage.PROVISIONED


def test_stored_outcomes_need_no_version_read() -> None:
    rig = rig_of(Step.batched("look", one_by_one(looks_up)),
                 Step.batched("make", one_by_one(creates("vm"))))
    rig.run_pass("a", "b")
    assert rig.storage.version_reads == 0
    assert rig.record("a").stage == Stage.PROVISIONED


def test_no_version_read_before_a_step_that_makes_no_machine() -> None:
    # Review: the read ran before every step that needs the listing, e.g. a wait.
    rig = rig_of(Step.batched("make", one_by_one(creates("vm")), found_again=True,
                              creates_machine=True),
                 Step.batched("wait", one_by_one(waits("booting"))))
    rig.run_pass("a", "b")
    assert rig.storage.version_reads == 0
    assert rig.storage.transactions == 1  # make stored with wait's Retry
    assert rig.record("a").step_name == "wait"


def test_a_step_that_creates_a_machine_must_see_the_listing() -> None:
    with pytest.raises(ValueError, match="make: creates_machine needs needs_listing"):
        Step.batched("make", one_by_one(creates("vm")), needs_listing=False,
                     creates_machine=True)

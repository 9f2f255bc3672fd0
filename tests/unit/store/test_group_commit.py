"""GroupCommit: the items that wait while a turn writes go together in the next
turn; each caller gets its own outcome, a failed turn fails all of its callers
and no one else, and a caller past its deadline leaves before being written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from talprov.store.errors import StoreError
from talprov.store.group_commit import GroupCommit
from talprov.store.guard import QueryGuard, current_guard, guarded


class Writer:
    """A ``write_many`` that records its turns; the first turn waits for ``release``."""

    def __init__(self, answer: Callable[[str], str | Exception] = str.upper) -> None:
        self.turns: list[list[str]] = []
        self.release = threading.Event()
        self.answer = answer
        self.fail_turn: int | None = None

    def __call__(self, items: Sequence[str]) -> list[str | Exception]:
        self.turns.append(list(items))
        if len(self.turns) == 1:
            assert self.release.wait(10)
        if self.fail_turn == len(self.turns):
            raise StoreError("store: commit failed")
        return [self.answer(item) for item in items]


def in_threads(group: GroupCommit[str, str], items: Sequence[str],
               guard: QueryGuard | None = None) -> tuple[dict[str, Any], list[threading.Thread]]:
    """Each item submitted in its own thread, under ``guard`` when given."""
    outcomes: dict[str, Any] = {}

    def run(item: str) -> None:
        try:
            with guarded(guard):
                outcomes[item] = group.submit(item)
        except Exception as exc:  # collected for the assertions
            outcomes[item] = exc

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return outcomes, threads


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in 10 s"
        time.sleep(0.001)


def joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_items_that_wait_during_a_turn_are_written_together_in_the_next() -> None:
    writer = Writer()
    group: GroupCommit[str, str] = GroupCommit(writer)
    first, first_threads = in_threads(group, ["a"])
    wait_until(lambda: writer.turns == [["a"]])
    rest, rest_threads = in_threads(group, ["b", "c", "d", "e"])
    wait_until(lambda: group.waiting == 4)
    assert first == {}
    assert rest == {}
    writer.release.set()
    joined(first_threads + rest_threads)
    assert writer.turns[0] == ["a"]
    assert sorted(writer.turns[1]) == ["b", "c", "d", "e"]
    assert len(writer.turns) == 2
    assert {**first, **rest} == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}
    assert group.waiting == 0


def test_a_turn_takes_at_most_its_limit_and_the_rest_follow() -> None:
    writer = Writer()
    group: GroupCommit[str, str] = GroupCommit(writer, most=2)
    _, first_threads = in_threads(group, ["a"])
    wait_until(lambda: len(writer.turns) == 1)
    outcomes, threads = in_threads(group, ["b", "c", "d", "e", "f"])
    wait_until(lambda: group.waiting == 5)
    writer.release.set()
    joined(first_threads + threads)
    assert [len(turn) for turn in writer.turns] == [1, 2, 2, 1]
    assert outcomes == {item: item.upper() for item in "bcdef"}


def test_an_item_of_its_own_error_fails_only_its_caller() -> None:
    writer = Writer(answer=lambda item: ValueError(item) if item == "bad" else item.upper())
    writer.release.set()
    group: GroupCommit[str, str] = GroupCommit(writer)
    assert group.submit("ok") == "OK"
    with pytest.raises(ValueError, match="bad"):
        group.submit("bad")
    assert group.submit("again") == "AGAIN"


def test_a_failed_turn_fails_every_caller_of_it_and_the_next_turn_goes_on() -> None:
    writer = Writer()
    writer.fail_turn = 2
    group: GroupCommit[str, str] = GroupCommit(writer)
    first, first_threads = in_threads(group, ["a"])
    wait_until(lambda: len(writer.turns) == 1)
    failed, failed_threads = in_threads(group, ["b", "c", "d"])
    wait_until(lambda: group.waiting == 3)
    writer.release.set()
    joined(first_threads + failed_threads)
    assert first == {"a": "A"}
    assert sorted(failed) == ["b", "c", "d"]
    assert all(isinstance(e, StoreError) and "commit failed" in str(e) for e in failed.values())
    # Each caller raises its own copy: their tracebacks do not mix.
    assert len({id(e) for e in failed.values()}) == 3
    assert group.submit("later") == "LATER"
    assert writer.turns[-1] == ["later"]


def test_a_caller_past_its_deadline_leaves_the_queue_unwritten() -> None:
    writer = Writer()
    group: GroupCommit[str, str] = GroupCommit(writer)
    _, first_threads = in_threads(group, ["a"])
    wait_until(lambda: len(writer.turns) == 1)
    late, late_threads = in_threads(group, ["late"], guard=QueryGuard(0.0))
    joined(late_threads)
    assert isinstance(late["late"], StoreError)
    assert "deadline" in str(late["late"])
    assert group.waiting == 0
    writer.release.set()
    joined(first_threads)
    assert group.submit("next") == "NEXT"
    assert writer.turns == [["a"], ["next"]]  # "late" was never written


def test_a_caller_already_in_a_turn_waits_for_its_commit_past_its_deadline() -> None:
    gates = [threading.Event(), threading.Event()]
    turns: list[list[str]] = []

    def write(items: Sequence[str]) -> list[str | Exception]:
        turns.append(list(items))
        assert gates[len(turns) - 1].wait(10)
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(write)
    _, first = in_threads(group, ["a"])
    wait_until(lambda: turns == [["a"]])
    _, second = in_threads(group, ["c"])  # leads the next turn
    wait_until(lambda: group.waiting == 1)
    clock_reads = [0]

    def clock() -> float:
        clock_reads[0] += 1
        return time.monotonic()

    outcome, guarded_threads = in_threads(group, ["b"], guard=QueryGuard(1.0, clock=clock))
    wait_until(lambda: group.waiting == 2)
    gates[0].set()
    wait_until(lambda: turns == [["a"], ["c", "b"]])
    time.sleep(1.2)  # past its deadline while its turn writes
    reads_while_waiting = clock_reads[0]
    time.sleep(0.1)
    assert clock_reads[0] == reads_while_waiting  # it sleeps; it does not poll
    assert outcome == {}
    gates[1].set()
    joined(first + second + guarded_threads)
    assert outcome == {"b": "B"}  # it was being written: it hears the commit


def test_an_interrupted_turn_still_answers_and_hands_on_the_lead() -> None:
    calls: list[list[str]] = []
    release = threading.Event()

    def interrupted(items: Sequence[str]) -> list[str | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            assert release.wait(10)
            raise KeyboardInterrupt
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(interrupted)
    first: dict[str, BaseException] = {}

    def lead() -> None:
        try:
            group.submit("a")
        except BaseException as exc:  # KeyboardInterrupt in this thread only
            first["a"] = exc

    leader = threading.Thread(target=lead)
    leader.start()
    wait_until(lambda: len(calls) == 1)
    rest, threads = in_threads(group, ["b"])
    wait_until(lambda: group.waiting == 1)
    release.set()
    joined([leader, *threads])
    assert isinstance(first["a"], KeyboardInterrupt)
    assert rest == {"b": "B"}


def test_a_turn_obeys_the_latest_deadline_of_its_callers_or_none() -> None:
    seen: list[float | None] = []
    writer = Writer()

    def observing(items: Sequence[str]) -> list[str | Exception]:
        guard = current_guard()
        seen.append(None if guard is None else guard.seconds_left())
        return writer(items)

    group: GroupCommit[str, str] = GroupCommit(observing)
    _, first = in_threads(group, ["a"], guard=QueryGuard(5))
    wait_until(lambda: len(writer.turns) == 1)
    _, short = in_threads(group, ["b"], guard=QueryGuard(1))
    wait_until(lambda: group.waiting == 1)
    _, long = in_threads(group, ["c"], guard=QueryGuard(100))
    wait_until(lambda: group.waiting == 2)
    writer.release.set()
    joined(first + short + long)
    _, unguarded = in_threads(group, ["d"])
    joined(unguarded)
    assert seen[0] is not None
    assert 0 < seen[0] <= 5
    assert seen[1] is not None
    assert 50 < seen[1] <= 100
    assert seen[2] is None  # a caller without a deadline: the turn has none

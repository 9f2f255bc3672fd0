"""One rule for taking over a lease a dead process of this host left (request
leases in the reconciler, cluster leases in the scaler): processes.take_over_if_dead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from talprov.processes import take_over_if_dead


class Calls:
    """Records the release and claim calls; claims answer ``claimed``."""

    def __init__(self, claimed: bool = True) -> None:
        self.said: list[str] = []
        self.claimed = claimed

    def release(self, owner: str) -> None:
        self.said.append(f"release {owner}")

    def claim(self) -> bool:
        self.said.append("claim")
        return self.claimed


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_local_holder_is_released_as_itself_then_claimed() -> None:
    calls = Calls()
    dead = f"{socket.gethostname()}:{exited_pid()}/edit/1"
    assert take_over_if_dead(dead, release=calls.release, claim=calls.claim)
    assert calls.said == [f"release {dead}", "claim"]


def test_a_lost_race_after_the_release_is_false() -> None:
    calls = Calls(claimed=False)
    dead = f"{socket.gethostname()}:{exited_pid()}"
    assert not take_over_if_dead(dead, release=calls.release, claim=calls.claim)
    assert calls.said == [f"release {dead}", "claim"]


def test_a_live_or_remote_holder_is_left_alone() -> None:
    calls = Calls()
    for holder in (f"{socket.gethostname()}:{os.getpid()}", "elsewhere.example:1"):
        assert not take_over_if_dead(holder, release=calls.release, claim=calls.claim)
    assert calls.said == []


def test_a_lease_freed_meanwhile_is_claimed_without_a_release() -> None:
    calls = Calls()
    assert take_over_if_dead(None, release=calls.release, claim=calls.claim)
    assert calls.said == ["claim"]

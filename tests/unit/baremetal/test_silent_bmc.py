"""A BMC that stops answering (ipmi_sim stuck in its chassis program) neither keeps
`talprov reconcile --once` alive after SIGTERM nor after its round (QA: hung for
ten minutes until kill -9; each IPMI call is bounded, docs/providers/baremetal.md).
The request whose call is left unanswered keeps its lease until the process is
gone (talprov.reconcile.stop_gate)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.processes import dead_local_worker
from talprov.store.store import Store
from tests.emulators.baremetal.rig import BMC_USER, RigUnavailable, VirtualMachine, lone_bmc
from tests.helpers import Home
from tests.unit.test_cli_sigterm import leases_of

UUID = "6b4a1c2d-0000-4000-8000-0000000000b2"


def request_for(home: Home, bmc: VirtualMachine) -> dict[str, str]:
    """Request i1 on instance "bm" whose only machine has ``bmc``, as a person sets
    it up from the docs; the environment that resolves its BMC password."""
    home.providers["bm"] = {
        "type": "baremetal", "inventory": str(home.root / "inv.sqlite"),
        "boot_url": "http://127.0.0.1:1", "bmc_min_interval": 0, "bmc_attempts": 1,
        # Not a directory here: prepare-boot leaves the check to the boot server's host.
        "mirror_dir": str(home.root / "mirror-elsewhere")}
    home.write_config()
    env = {**home.env(), "BMC_PASS": bmc.password}
    added = subprocess.run(
        [sys.executable, "-m", "talprov", "baremetal", "add", "node-02", "--uuid", UUID,
         "--bmc", f"ipmi://127.0.0.1:{bmc.bmc_port}", "--bmc-user", BMC_USER,
         "--bmc-password", "${env:BMC_PASS}"],
        env=env, cwd=home.root, capture_output=True, text=True, timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    home.run("machine", "create", "-f", str(home.write_request("i1", provider="bm")),
             check=True)
    return env


@pytest.fixture
def silent_bmc(tmp_path: Path) -> Iterator[VirtualMachine]:
    try:
        with lone_bmc(tmp_path / "bmc", name="node-02") as vm:
            vm.go_silent()
            yield vm
    except RigUnavailable as exc:
        pytest.fail(str(exc))


def test_sigterm_while_a_bmc_hangs_exits_at_once_and_leaves_the_lease_to_take_over(
        home: Home, silent_bmc: VirtualMachine) -> None:
    env = request_for(home, silent_bmc)
    assert silent_bmc.held_calls() == []  # any held call below is the worker's
    worker = subprocess.Popen([sys.executable, "-m", "talprov", "-v", "reconcile", "--once"],
                              env=env, cwd=home.root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    store = Store(home.store_url)
    try:
        # Until the BMC holds the worker's IPMI call (set-pxe's): a fixed sleep here
        # let a slow earlier step take the SIGTERM, which gave the lease back.
        deadline = time.monotonic() + 60
        while not silent_bmc.held_calls():
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "no IPMI call of the worker reached the BMC"
            time.sleep(0.1)
        assert leases_of(store, worker.pid)  # the request's step is under way
        os.kill(worker.pid, signal.SIGTERM)
        stopped = time.monotonic()
        _, err = worker.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 128 + signal.SIGTERM, err
    assert "talprov: interrupted (SIGTERM)" in err
    assert took < 8, f"exited {took:.1f}s after SIGTERM"
    # The unanswered IPMI call was left running in its thread, so the request kept
    # its lease until the process was gone (nobody else could start it meanwhile);
    # held by a dead process of this host, the next round takes it over at once.
    assert leases_of(store, worker.pid) == [f"{socket.gethostname()}:{worker.pid}"]
    assert dead_local_worker(f"{socket.gethostname()}:{worker.pid}")
    record = store.get_request("i1")
    assert record is not None  # nothing lost: the next round takes it up again
    assert record.stage.value in ("pending", "provisioning")


def test_a_round_with_a_hung_bmc_ends_the_process_when_it_is_done(
        home: Home, silent_bmc: VirtualMachine) -> None:
    # A guard rather than the reproduction (that is the test above and
    # test_power's subprocess test): here pyghmi gives up on a login that gets
    # no answer after about 28 s by itself; QA's hung call never returned.
    env = request_for(home, silent_bmc)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "talprov", "-v", "reconcile", "--once"],
                          env=env, cwd=home.root, capture_output=True, text=True,
                          timeout=120, check=False)
    took = time.monotonic() - started
    assert "round done: 1 request worked on" in done.stderr, done.stderr
    # One call bounded at 30 s (bmc_attempts: 1; pyghmi may give up a little
    # earlier by itself) and the start-up, never a wait on the hung call.
    assert took < 45, f"reconcile --once took {took:.1f}s"
    record = Store(home.store_url).get_request("i1")
    assert record is not None
    assert f"ipmi://127.0.0.1:{silent_bmc.bmc_port}" in (record.error or "")

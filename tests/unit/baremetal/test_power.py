"""Power drivers against real BMC emulators: ipmi_sim (IPMI) and sushy-tools (Redfish)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.baremetal.power.base import BootDevice, PowerState, Throttle
from talprov.baremetal.power.ipmi import IpmiPower
from talprov.baremetal.power.redfish import RedfishPower
from talprov.providers.errors import AuthError, Transient
from tests.emulators.baremetal.rig import (
        BMC_USER,
    RigUnavailable,
    VirtualMachine,
    free_udp_port,
    lone_bmc,
)
from tests.emulators.baremetal.sushy import PASSWORD, USER, sushy_emulator


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[VirtualMachine]:
    try:
        with lone_bmc(tmp_path) as vm:
            yield vm
    except RigUnavailable as exc:
        pytest.fail(str(exc))


def test_ipmi_power_cycle_and_pxe_once(bmc: VirtualMachine) -> None:
    power = IpmiPower("127.0.0.1", BMC_USER, bmc.password, port=bmc.bmc_port, min_interval=0.05)
    assert power.power_state() == PowerState.OFF
    power.set_next_boot(BootDevice.PXE)
    power.power_on()
    assert power.power_state() == PowerState.ON
    assert bmc.powered()
    first_pid = bmc.qemu_pid()
    power.power_on()  # idempotent: still the same machine
    assert bmc.qemu_pid() == first_pid
    power.power_cycle()
    assert power.power_state() == PowerState.ON
    assert bmc.qemu_pid() != first_pid
    power.power_off()
    assert power.power_state() == PowerState.OFF
    assert not bmc.powered()
    log = bmc.chassis_log()
    assert any(line.endswith("set boot pxe") for line in log)
    # The PXE request applied to the first boot only (the BMC's "next boot" flag).
    assert [line.split()[-2] for line in log if "power on boot=" in line] == [
        "boot=pxe", "boot=default"]


def test_ipmi_wrong_password_is_an_auth_error_at_once(bmc: VirtualMachine) -> None:
    power = IpmiPower("127.0.0.1", BMC_USER, "not-the-password", port=bmc.bmc_port)
    started = time.monotonic()
    with pytest.raises(AuthError) as caught:
        power.power_on()
    assert time.monotonic() - started < 2
    assert "not-the-password" not in str(caught.value)
    assert not bmc.powered()


def test_ipmi_silent_bmc_is_transient_and_bounded() -> None:
    power = IpmiPower("127.0.0.1", "u", "p", port=free_udp_port(), attempts=1, call_timeout=2)
    started = time.monotonic()
    with pytest.raises(Transient):
        power.power_state()
    assert time.monotonic() - started < 8


def test_ipmi_recovers_when_the_bmc_answers_again_after_a_failed_login(
        bmc: VirtualMachine) -> None:
    # Every datagram of the first login is lost, then the network heals. pyghmi
    # files a session under the str credentials while it logs in and removes it
    # under bytes ones, so the dead session stayed and was handed to every later
    # command: "Session no longer connected" forever, in the chaos rounds too.
    from tests.chaos.udp_proxy import UdpFaultProxy

    network = UdpFaultProxy(bmc.bmc_port, seed=1, rate=1.0, kinds=("drop-before",)).start()
    try:
        power = IpmiPower("127.0.0.1", BMC_USER, bmc.password, port=network.port,
                          min_interval=0.05, attempts=1, call_timeout=15)
        with pytest.raises(Transient):
            power.power_state()
        network.rate = 0.0
        assert IpmiPower("127.0.0.1", BMC_USER, bmc.password, port=network.port,
                         min_interval=0.05, attempts=2).power_state() == PowerState.OFF
    finally:
        network.stop()


def test_throttle_spaces_commands() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(0.5, clock=lambda: now[0], sleep=sleep)
    throttle.wait()
    now[0] += 0.2
    throttle.wait()
    throttle.wait()
    assert slept == [pytest.approx(0.3), pytest.approx(0.5)]


@pytest.mark.slow
def test_redfish_against_sushy_emulator(tmp_path: Path) -> None:
    with sushy_emulator(tmp_path) as url:
        power = RedfishPower(url, USER, PASSWORD, min_interval=0)
        assert power.power_state() == PowerState.OFF
        power.set_next_boot(BootDevice.PXE)
        import sushy

        root = sushy.Sushy(url, username=USER, password=PASSWORD)
        system = root.get_system_collection().get_members()[0]
        assert system.boot.target == sushy.BOOT_SOURCE_TARGET_PXE
        power.power_on()
        # The fake driver applies power changes 1-11 s later, like slow hardware.
        deadline = time.monotonic() + 15
        while power.power_state() != PowerState.ON and time.monotonic() < deadline:
            time.sleep(0.3)
        assert power.power_state() == PowerState.ON
        power.power_cycle(off_timeout=20, poll=0.3)  # returns once off was seen, then on
        deadline = time.monotonic() + 15
        while power.power_state() != PowerState.ON and time.monotonic() < deadline:
            time.sleep(0.3)
        assert power.power_state() == PowerState.ON
        with pytest.raises(AuthError):
            RedfishPower(url, USER, "wrong-password", min_interval=0).power_state()


SILENT_CALL = """
import pathlib, sys
from talprov.baremetal.power.ipmi import IpmiPower
from talprov.providers.errors import Transient
power = IpmiPower("127.0.0.1", sys.argv[1], sys.argv[2], port=int(sys.argv[3]),
                  attempts=1, call_timeout=2, min_interval=0)
print("state:", power.power_state(), flush=True)  # logged in, as `reconcile` is
pathlib.Path(sys.argv[4], "silent").touch()  # the BMC hangs from now on
try:
    power.power_on()
except Transient as exc:
    print("transient:", exc, flush=True)
"""


def test_a_process_whose_ipmi_call_got_no_answer_exits_at_once(bmc: VirtualMachine) -> None:
    # QA: a BMC that stops answering (its ipmi_sim stuck in a chassis program)
    # left pyghmi's call blocked for good; the call's worker thread was joined
    # at interpreter exit, so `reconcile --once` printed its round and never
    # exited (nor on SIGTERM). The process must end right after the bounded call.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SILENT_CALL, BMC_USER, bmc.password, str(bmc.bmc_port),
         str(bmc.vmdir)],
        capture_output=True, text=True, timeout=40, check=False)
    took = time.monotonic() - started
    assert "state: off" in done.stdout, done.stderr
    assert "transient: power on at ipmi://127.0.0.1" in done.stdout, done.stderr
    assert "no answer within 2s" in done.stdout, done.stderr
    assert done.returncode == 0, done.stderr
    assert took < 10, f"the process took {took:.1f}s to exit after a 2s-bounded call"


@pytest.mark.slow
def test_a_redfish_call_that_succeeds_logs_no_error(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # QA: every call against sushy-tools logged "ERROR sushy.connector:
    # Authentication to the session service failed" although it then worked
    # (sushy falls back to HTTP Basic); the failures that matter reach us as
    # exceptions and are translated (talprov.baremetal.errors).
    with sushy_emulator(tmp_path) as url:
        caplog.set_level(logging.DEBUG)
        power = RedfishPower(url, USER, PASSWORD, min_interval=0)
        assert power.power_state() == PowerState.OFF
        power.close()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]

#!/usr/bin/env python3
"""ipmi_sim's chassis_control program: a QEMU VM as the chassis of one BMC.

ipmi_sim runs ``chassis_control.py VMDIR [MC] get power boot`` and
``… set power 1|0``, ``set boot pxe|default``, ``set reset 1``, ``set shutdown 1``
with popen and reads stdout to EOF inside its only event loop, so every call
returns at once: QEMU starts with ``-daemonize`` and all output goes to files.

VMDIR/vm.json names the VM (UUID, MAC, tap, network namespace); VMDIR/boot holds
the next boot device, consumed by the next power-on like a real BMC's
"next boot only" flag. Standard library only (runs under the system Python).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def running_pid(vmdir: Path) -> int | None:
    try:
        pid = int((vmdir / "qemu.pid").read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # A zombie (state Z) is off: PID 1 in these containers reaps late.
    return None if stat.rsplit(")", 1)[-1].split()[0] == "Z" else pid


def log(vmdir: Path, line: str) -> None:
    with (vmdir / "chassis.log").open("a") as handle:
        handle.write(f"{time.time():.3f} {line}\n")


def next_boot(vmdir: Path) -> str:
    try:
        return (vmdir / "boot").read_text().strip() or "default"
    except OSError:
        return "default"


def power_on(vmdir: Path) -> None:
    if running_pid(vmdir) is not None:
        return
    vm = json.loads((vmdir / "vm.json").read_text())
    device = next_boot(vmdir)
    (vmdir / "boot").write_text("default")  # next boot only
    nic = f"e1000,netdev=n0,mac={vm['mac']}"
    # PXE from the NIC's iPXE ROM only when asked; otherwise no ROM (nothing to boot).
    nic += ",bootindex=1" if device == "pxe" else ",romfile="
    prefix = ["ip", "netns", "exec", vm["netns"]] if vm.get("netns") else []
    argv = [
        *prefix, vm.get("qemu", "qemu-system-x86_64"),
        "-name", vm["name"], "-machine", "pc", "-accel", "tcg", "-m", str(vm.get("memory", 256)),
        "-smp", "1", "-uuid", vm["uuid"], "-display", "none", "-monitor", "none",
        "-serial", f"file:{vmdir / 'serial.log'}", "-no-reboot",
        "-netdev", f"tap,id=n0,ifname={vm['tap']},script=no,downscript=no", "-device", nic,
        "-daemonize", "-pidfile", str(vmdir / "qemu.pid"),
    ]
    with (vmdir / "qemu.out").open("a") as out:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                check=False, timeout=20)
    log(vmdir, f"power on boot={device} rc={result.returncode}")


def power_off(vmdir: Path) -> None:
    pid = running_pid(vmdir)
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while running_pid(vmdir) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    log(vmdir, "power off")


def stay_silent(vmdir: Path) -> None:
    """While VMDIR/silent exists, answer nothing: ipmi_sim waits for this program's
    output in its only event loop, so the whole BMC stops answering (a hung BMC).
    Ends when the file goes or ipmi_sim does (no orphan left behind)."""
    parent = os.getppid()
    while (vmdir / "silent").exists() and os.getppid() == parent:
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    vmdir = Path(argv[1])
    if (vmdir / "silent").exists():
        # Noted first: a test can tell that a call is now held (see
        # VirtualMachine.held_calls) instead of guessing how long it takes to come.
        log(vmdir, "held: " + " ".join(argv[2:]))
        stay_silent(vmdir)
        return 1
    args = [a for a in argv[2:] if not a.startswith("0x")]
    if not args:
        return 1
    if args[0] == "get":
        for item in args[1:]:
            if item == "power":
                print(f"power:{1 if running_pid(vmdir) else 0}")
            elif item == "boot":
                print(f"boot:{next_boot(vmdir)}")
        return 0
    if args[0] == "set" and len(args) >= 3:
        item, value = args[1], args[2]
        log(vmdir, f"set {item} {value}")
        if item == "power":
            (power_on if value == "1" else power_off)(vmdir)
        elif item == "boot":
            (vmdir / "boot").write_text(value)
        elif item == "reset" and value == "1":
            if running_pid(vmdir) is not None:
                power_off(vmdir)
                power_on(vmdir)
        elif item == "shutdown" and value == "1":
            power_off(vmdir)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

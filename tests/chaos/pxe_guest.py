"""Stands in for ``qemu-system-x86_64`` behind an ipmi_sim BMC in the bare-metal chaos rounds.

ipmi_sim's chassis program (tests/emulators/baremetal/chassis_control.py) starts
"QEMU" with ``-daemonize -pidfile FILE`` and counts the machine as on while that
process lives. This does the same without a VM: it forks, the parent writes the
child's pid and returns at once, and the child, when QEMU would PXE-boot (the
NIC has ``bootindex=1``), does what iPXE and Talos do against the boot server
(:class:`~tests.emulators.baremetal.pxe_machine.PxeMachine`, the stand-in of the
bare-metal contract tests), then stays up until powered off (SIGKILL).

    python -m tests.chaos.pxe_guest --boot-url URL QEMU-ARGS...
"""

from __future__ import annotations

import os
import sys
import time


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else ""


def _boot(boot_url: str, uuid: str, nic: str) -> None:
    from talprov.baremetal.power.base import BootDevice
    from tests.emulators.baremetal.pxe_machine import PxeMachine

    options = dict(part.partition("=")[::2] for part in nic.split(",")[1:])
    if options.get("bootindex") != "1":
        return  # no network boot: the "disk" boots, nothing reaches the boot server
    machine = PxeMachine(uuid=uuid, mac=options.get("mac", ""), boot_url=boot_url,
                         next_boot=BootDevice.PXE)
    try:
        machine.power_on()
    except Exception as exc:  # a boot that fails is a machine that does not come up
        print(f"PXE boot of {uuid} failed: {type(exc).__name__}: {exc}", flush=True)


def main(argv: list[str]) -> int:
    boot_url, qemu_args = argv[1], argv[2:]
    pid = os.fork()
    if pid:
        with open(_arg(qemu_args, "-pidfile"), "w") as handle:
            handle.write(str(pid))
        return 0
    os.setsid()
    _boot(boot_url, _arg(qemu_args, "-uuid"), _arg(qemu_args, "-device"))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--boot-url":
        sys.exit("usage: python -m tests.chaos.pxe_guest --boot-url URL QEMU-ARGS...")
    sys.exit(main(sys.argv[1:]))

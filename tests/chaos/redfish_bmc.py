"""One Redfish BMC of the bare-metal chaos platform: sushy-tools' emulator, its fake
systems driver with a chassis that PXE-boots.

Run as ``python -m tests.chaos.redfish_bmc CONFIG.json`` (started by
:func:`tests.chaos.baremetal.start_redfish_bmc`); it prints ``redfish listening on
http://127.0.0.1:PORT``. The Redfish resources, routes and basic auth are
sushy-tools' own; only the system driver differs from its fake driver, which
applies power changes 1–11 s late and ignores "boot once":

- a power change applies at once (the chaos rounds cannot wait 11 s per call);
- the boot override is used by the next power-on only, as a real BMC does with
  ``BootSourceOverrideEnabled: Once``;
- a power-on with the override ``Pxe`` boots the machine: a thread does what iPXE
  and Talos do against the boot server (:class:`~tests.emulators.baremetal.pxe_machine.PxeMachine`,
  the same stand-in the bare-metal contract tests use for a QEMU/iPXE boot).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from talprov.baremetal.power.base import BootDevice
from tests.emulators.baremetal.pxe_machine import PxeMachine

ON_STATES = ("On", "ForceOn", "ForceRestart", "GracefulRestart", "PowerCycle", "Nmi")


def chassis_driver(base: Any, boot_url: str) -> Any:
    """A subclass of sushy-tools' ``FakeDriver`` whose machines PXE-boot (see above)."""

    class ChassisDriver(base):  # type: ignore[misc]
        def set_power_state(self, identity: str, state: str) -> None:
            system = self._get(identity)
            was_on = system["power_state"] == "On"
            restart = "Restart" in state or state == "PowerCycle"
            if state in ("ForceOff", "GracefulShutdown"):
                self._update(system, power_state="Off")
                return
            if state not in ON_STATES:
                super().set_power_state(identity, state)
                return
            if was_on and not restart:
                return
            device = system.get("boot_device", "Hdd")
            self._update(system, power_state="On", boot_device="Hdd")  # next boot only
            if device == "Pxe":
                machine = PxeMachine(uuid=system["uuid"], mac=system["nics"][0]["mac"],
                                     boot_url=boot_url, next_boot=BootDevice.PXE)
                threading.Thread(target=_boot, args=(machine,), daemon=True).start()

    return ChassisDriver


def _boot(machine: PxeMachine) -> None:
    try:
        machine.power_on()
    except Exception as exc:  # a boot that fails is a machine that does not come up
        print(f"PXE boot of {machine.uuid} failed: {type(exc).__name__}: {exc}", flush=True)


def main(config_path: str) -> None:
    from sushy_tools.emulator import main as emulator  # type: ignore[import-untyped]
    from sushy_tools.emulator.resources.systems import (  # type: ignore[import-untyped]
        fakedriver,
    )
    from werkzeug.serving import make_server

    config = json.loads(Path(config_path).read_text())
    # The emulator builds its systems driver from this module attribute on first use.
    fakedriver.FakeDriver = chassis_driver(fakedriver.FakeDriver, config["boot_url"])
    emulator.app.configure(extra_config={
        "SUSHY_EMULATOR_AUTH_FILE": config["htpasswd"],
        "SUSHY_EMULATOR_FAKE_DRIVER": True,
        "SUSHY_EMULATOR_STATE_DIR": config["state_dir"],
        "SUSHY_EMULATOR_FAKE_SYSTEMS": [{
            "uuid": config["uuid"], "name": config["name"], "power_state": "Off",
            "nics": [{"mac": config["mac"], "ip": "10.0.0.1"}]}],
    })
    server = make_server("127.0.0.1", 0, emulator.app, threaded=True)
    print(f"redfish listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])

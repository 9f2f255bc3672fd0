"""A worker process that is SIGKILLed inside the clone step (run by test_crash.py).

It drives the vSphere provider for one request up to the clone step; right after
vCenter accepted the clone, before the step could return its state, it writes
a marker file and waits to be killed. Arguments: a JSON file with the settings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, run_step
from tests.unit.vmware.conftest import machine_request


def main(settings_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text())
    config = VSphereConfig.model_validate(
        {**settings["config"], "password": os.environ["VCSIM_PASSWORD"]})
    clock = FakeClock()
    runtime = Runtime(installation=settings["installation"], cache_dir=Path(settings["cache"]),
                      factory_url=settings["factory_url"], clock=clock, sleep=clock.sleep)
    provider = VSphereProvider("lab", config, runtime)
    owner = Owner(settings["installation"], settings["instance"])
    ctx = context(provider, machine_request(settings["request_id"]), owner)
    steps = {step.name: step for step in provider.steps()}
    run_step(steps["ensure-template"], ctx, clock)
    original = provider.client.call

    def call_then_hang(what: str, fn: Any) -> Any:
        result = original(what, fn)
        if what.startswith("clone VM"):
            Path(settings["marker"]).write_text(str(result))
            time.sleep(600)  # the test kills us here
        return result

    provider.client.call = call_then_hang  # type: ignore[method-assign]
    steps["clone-vm"].run(ctx)
    sys.exit("the clone step returned; the kill was expected before")


if __name__ == "__main__":
    main(sys.argv[1])

"""A worker process that is SIGKILLed at a marked vCenter call (run by test_crash.py).

Right after vCenter accepted the marked call, before anything could store what
it did, the worker writes a marker file and waits to be killed. Arguments: a
JSON file with the settings; its ``mode`` says what the worker runs:

* ``clone-step``: the vSphere provider's steps for one request up to the clone
  step, killed inside it once the clone was started;
* ``pass``: one pass of talprov's real reconciler and store over the requests
  the test recorded, killed right after the first power-on, which a request
  whose clone ended makes while its batch's other clones still run and before
  anything of the batch is stored (pipelined steps).
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
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, run_step
from tests.unit.vmware.conftest import machine_request


def provider_hanging_after(settings: dict[str, Any], runtime: Runtime,
                           call: str) -> VSphereProvider:
    """The provider of ``settings``, hanging after its first call whose description
    starts with ``call`` (once the marker file is written)."""
    config = VSphereConfig.model_validate(
        {**settings["config"], "password": os.environ["VCSIM_PASSWORD"]})
    provider = VSphereProvider(settings["instance"], config, runtime)
    original = provider.client.call

    def call_then_hang(what: str, fn: Any) -> Any:
        result = original(what, fn)
        if what.startswith(call):
            Path(settings["marker"]).write_text(str(result))
            time.sleep(600)  # the test kills us here
        return result

    provider.client.call = call_then_hang  # type: ignore[method-assign]
    return provider


def runtime_of(settings: dict[str, Any], clock: FakeClock | None = None) -> Runtime:
    extra: dict[str, Any] = {} if clock is None else {"clock": clock, "sleep": clock.sleep}
    return Runtime(installation=settings["installation"], cache_dir=Path(settings["cache"]),
                   factory_url=settings["factory_url"], **extra)


def clone_step(settings: dict[str, Any]) -> None:
    clock = FakeClock()
    provider = provider_hanging_after(settings, runtime_of(settings, clock), "clone VM")
    owner = Owner(settings["installation"], settings["instance"])
    ctx = context(provider, machine_request(settings["request_id"]), owner)
    steps = {step.name: step for step in provider.steps()}
    run_step(steps["ensure-template"], ctx, clock)  # makes no call named "clone VM"
    steps["clone-vm"].run(ctx)
    sys.exit("the clone step returned; the kill was expected before")


def reconcile_pass(settings: dict[str, Any]) -> None:
    runtime = runtime_of(settings)
    provider = provider_hanging_after(settings, runtime, "power on VM")
    reconciler = Reconciler(Store(settings["store"]),
                            {settings["instance"]: ProviderHandle(provider)}, runtime)
    reconciler.run_pass()
    sys.exit("the pass ended; the kill was expected before")


def main(settings_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text())
    {"clone-step": clone_step, "pass": reconcile_pass}[settings["mode"]](settings)


if __name__ == "__main__":
    main(sys.argv[1])

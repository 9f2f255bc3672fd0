"""A reconcile worker SIGKILLed inside a pipelined batch (run by test_crash.py).

It runs one pass of talprov's real reconciler and store over the requests the
test recorded; right after vCenter accepted the first power-on, which a request
whose clone ended makes while the batch's other clones still run and before
anything of the batch is stored, it writes a marker file and waits to be
killed. Arguments: a JSON file with the settings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider


def main(settings_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text())
    config = VSphereConfig.model_validate(
        {**settings["config"], "password": os.environ["VCSIM_PASSWORD"]})
    runtime = Runtime(installation=settings["installation"], cache_dir=Path(settings["cache"]),
                      factory_url=settings["factory_url"])
    provider = VSphereProvider(settings["instance"], config, runtime)
    original = provider.client.call

    def call_then_hang(what: str, fn: Any) -> Any:
        result = original(what, fn)
        if what.startswith("power on VM"):
            Path(settings["marker"]).write_text(str(result))
            time.sleep(600)  # the test kills us here
        return result

    provider.client.call = call_then_hang  # type: ignore[method-assign]
    store = Store(settings["store"])
    reconciler = Reconciler(store, {settings["instance"]: ProviderHandle(provider)}, runtime)
    reconciler.run_pass()
    sys.exit("the pass ended; the kill was expected before")


if __name__ == "__main__":
    main(sys.argv[1])

"""A worker process for the SIGKILL tests: provisions against the fake cloud.

Run as ``python -m tests.unit.openstack.crash_child SPEC.json``; the test kills it
while the cloud acts. With a ``store`` in the spec it runs one pass of talprov's
real reconciler over the requests recorded there; else it runs the provider's
steps for the spec's one request.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from talprov.openstack.config import OpenStackConfig
from talprov.openstack.data import OpenStackData
from talprov.openstack.provider import OpenStackProvider
from talprov.openstack.state import OpenStackState
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import MachineRequest, Owner
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store


def main(spec_path: str) -> int | str:
    spec = json.loads(Path(spec_path).read_text())
    runtime = Runtime(installation=spec["installation"], cache_dir=Path(spec["cache_dir"]),
                      factory_url=spec["factory_url"])
    provider = OpenStackProvider("os-test", OpenStackConfig.model_validate(spec["config"]),
                                 runtime)
    if "store" in spec:
        reconciler = Reconciler(Store(spec["store"]), {"os-test": ProviderHandle(provider)},
                                runtime)
        reconciler.run_pass()
        return "the pass ended; the kill was expected before"
    request = MachineRequest.model_validate(spec["request"])
    ctx = StepContext(request=request, data=OpenStackData.model_validate(request.provider_data),
                      state=OpenStackState(), owner=Owner(**spec["owner"]), runtime=runtime)
    for step in provider.steps():
        while (result := step.run(ctx)) is not None:
            time.sleep(min(result.after, 0.05))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""A worker process for the SIGKILL test: provisions one request against the fake cloud.

Run as ``python -m tests.unit.openstack.crash_child SPEC.json``; the test kills it
while the cloud is creating its server.
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


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    runtime = Runtime(installation=spec["installation"], cache_dir=Path(spec["cache_dir"]),
                      factory_url=spec["factory_url"])
    provider = OpenStackProvider("os-test", OpenStackConfig.model_validate(spec["config"]),
                                 runtime)
    request = MachineRequest.model_validate(spec["request"])
    ctx = StepContext(request=request, data=OpenStackData.model_validate(request.provider_data),
                      state=OpenStackState(), owner=Owner(**spec["owner"]), runtime=runtime)
    for step in provider.steps():
        while (result := step.run(ctx)) is not None:
            time.sleep(min(result.after, 0.05))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""A worker process for the store crash tests: one pass of the real reconciler.

``python -m tests.unit.aws.store_crash_child STORE_URL ENDPOINT CACHE_DIR KILL``

It runs one pass of talprov's reconciler over the requests recorded in the
store, driving the AWS provider on the moto server at ENDPOINT, and SIGKILLs
itself the moment the reply ``KILL`` (``Operation:N``, the N-th reply to that
EC2 operation) arrives: after EC2 acted, before talprov heard back.
"""

from __future__ import annotations

import sys
from pathlib import Path

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.emulators.moto import REGION
from tests.unit.aws.crash_worker import _kill_hook

INSTALLATION = "talprov-store-crash"


def main(argv: list[str]) -> str:
    store_url, endpoint, cache_dir, kill = argv
    runtime = Runtime(installation=INSTALLATION, cache_dir=Path(cache_dir))
    # Unnamed machines: the requests share one batched launch.
    provider = AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=endpoint,
                                                 max_attempts=1, name_machines=False), runtime)
    provider.clients.ec2.meta.events.register("after-call.ec2", _kill_hook(kill))
    reconciler = Reconciler(Store(store_url), {"aws-test": ProviderHandle(provider)}, runtime)
    reconciler.run_pass()
    return f"the pass ended; the kill at {kill} was expected before"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

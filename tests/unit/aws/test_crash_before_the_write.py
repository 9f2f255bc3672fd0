"""A worker SIGKILLed after RunInstances, before the one store write that holds the
launch (``ensure-instance`` is found again: its outcome is stored with
``wait-running``'s): the restart finds the instances by their tags and member
list, and ends with exactly one instance per request, each stored."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.emulators.moto import REGION, MotoServer
from tests.helpers import REPO
from tests.unit.aws.helpers import make_request
from tests.unit.aws.store_crash_child import INSTALLATION

REQUESTS = ("w-0", "w-1", "w-2", "w-3")
# The launch's reply; the look at the launched instances (the pass's listing
# is the first DescribeInstances), the last call before the write.
KILL_POINTS = ("RunInstances:1", "DescribeInstances:2")


@pytest.mark.parametrize("kill", KILL_POINTS)
def test_sigkill_before_the_write_leaves_one_instance_each(
        moto_server: MotoServer, tmp_path: Path, kill: str) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(store_url)
    store.migrate()
    for rid in REQUESTS:
        store.create_request(make_request(rid))
    cache = tmp_path / "cache"
    child = subprocess.run(
        [sys.executable, "-m", "tests.unit.aws.store_crash_child", store_url, moto_server.url,
         str(cache), kill], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    runtime = Runtime(installation=INSTALLATION, cache_dir=cache)
    provider = AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=moto_server.url,
                                                 max_attempts=1), runtime)
    owner = Owner(INSTALLATION, "aws-test")
    # The window is real: EC2 launched them all; the store holds resolve-image's
    # outcome (the nonce of the launch's ClientToken) and no instance id.
    assert Counter(m.request_id for m in provider.list_machines(owner)) == Counter(REQUESTS)
    assert [(r.stage, r.step_name, r.infra_id) for r in store.list_requests()] == [
        (Stage.PROVISIONING, "ensure-instance", None)] * len(REQUESTS)

    # A fresh worker takes the dead one's requests over and resumes.
    reconciler = Reconciler(store, {"aws-test": ProviderHandle(provider)}, runtime)
    assert reconciler.run_until(lambda: all(
        r.stage == Stage.PROVISIONED for r in store.list_requests()), timeout=120, interval=0.2)
    reconciler.close()

    machines = provider.list_machines(owner)
    assert Counter(m.request_id for m in machines) == Counter(REQUESTS)
    by_request = {m.request_id: m.infra_id for m in machines}
    for record in store.list_requests():
        assert record.infra_id == by_request[record.request.id]

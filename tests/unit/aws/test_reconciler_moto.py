"""The AWS provider under the real request reconciler and store, against moto."""

from __future__ import annotations

from pathlib import Path

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner, Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.moto import REGION, CallCounter, MotoServer
from tests.unit.aws.helpers import make_request


def test_five_requests_provision_and_delete_through_the_reconciler(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    clock = FakeClock()
    runtime = Runtime(installation="talprov-rec", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    # Unnamed machines: identical configs share one batched launch.
    provider = AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=moto_server.url,
                                                 max_attempts=1, name_machines=False), runtime)
    counter = CallCounter()
    counter.attach(provider.clients.ec2)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    reconciler = Reconciler(store, {"aws-test": ProviderHandle(provider, 4)}, runtime,
                            policy=StepPolicy(max_attempts=3))
    for i in range(5):
        store.create_request(make_request(f"w-{i}"))

    def all_in(stage: Stage) -> bool:
        return all(r.stage == stage for r in store.list_requests(include_gone=True))

    assert reconciler.run_until(lambda: all_in(Stage.PROVISIONED), timeout=600)

    records = store.list_requests()
    owner = Owner(runtime.installation, "aws-test")
    machines = {m.request_id or "?": m for m in provider.list_machines(owner)}
    assert sorted(machines) == [f"w-{i}" for i in range(5)]
    for record in records:
        assert record.infra_id == machines[record.request.id].infra_id
        assert record.addresses
    assert counter.calls["RunInstances"] == 1  # the reconciler handed the step a batch
    assert counter.total() / 5 <= 3

    before = counter.calls["DescribeInstances"]
    report = reconciler.run_pass()  # converged: one listing, nothing else
    assert report.list_calls == {"aws-test": 1}
    assert counter.calls["DescribeInstances"] - before == 1

    for i in range(5):
        store.request_deletion(f"w-{i}")
    assert reconciler.run_until(lambda: all_in(Stage.GONE), timeout=600)
    assert provider.list_machines(owner) == []

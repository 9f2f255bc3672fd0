"""Missing AWS credentials are the environment's problem, not the request's: the
request is retried, names what is missing, and goes on once the operator sets the
credentials and restarts (QA: after `talprov demo --keep` without the AWS exports,
a request failed for good at its first step: "permanent error")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.providers.types import Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.moto import REGION, MotoServer, fake_credentials
from tests.unit.aws.helpers import make_request

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def reconciler(store: Store, server: MotoServer, tmp_path: Path,
               clock: FakeClock) -> Reconciler:
    """A fresh process's reconciler: its provider reads the credentials anew."""
    runtime = Runtime(installation="talprov-creds", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    provider = AwsProvider("aws-test", AwsConfig(region=REGION, endpoint_url=server.url,
                                                 max_attempts=1), runtime)
    return Reconciler(store, {"aws-test": ProviderHandle(provider, 4)}, runtime)


def test_a_request_waits_for_missing_credentials_and_goes_on_after_a_restart(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    clock = FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    store.create_request(make_request("w-1"))
    without = reconciler(store, moto_server, tmp_path, clock)
    for _ in range(30):  # half an hour of passes (more than 8 attempts) before the fix
        without.run_pass()
        clock.sleep(60)
    record = store.get_request("w-1")
    assert record is not None
    assert record.stage != Stage.FAILED, record.error
    assert "no AWS credentials" in str(record.error), record.error
    # QA: after the fix the request sat out up to backoff_cap (minutes) first.
    assert record.next_attempt_at is not None
    waits = (record.next_attempt_at - datetime.fromtimestamp(clock(), UTC)).total_seconds()
    assert waits <= StepPolicy().unavailable_backoff_cap

    for name in CREDENTIALS:  # the operator exports them and restarts
        monkeypatch.setenv(name, fake_credentials()[name])
    restarted = reconciler(store, moto_server, tmp_path, clock)

    def provisioned() -> bool:
        found = store.get_request("w-1")
        return found is not None and found.stage == Stage.PROVISIONED

    assert restarted.run_until(provisioned, timeout=600)

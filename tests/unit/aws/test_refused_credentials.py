"""Credentials AWS refuses are the instance's trouble, not a request's: its requests
wait with the error recorded and go on once the credentials work (before, an
AuthFailure failed every request of the instance for good, each needing a retry
by hand; Proxmox, vSphere and OpenStack already held them back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.moto import MotoServer, fake_credentials
from tests.unit.aws.helpers import make_request
from tests.unit.aws.test_missing_credentials import reconciler
from tests.unit.instance_access import fails_then_heals

#: What EC2 answers a key it does not know (HTTP 401, code AuthFailure).
REFUSAL = {"Error": {"Code": "AuthFailure",
                     "Message": "AWS was not able to validate the provided access credentials"},
           "ResponseMetadata": {"HTTPStatusCode": 401}}


def test_refused_credentials_block_requests_until_they_work(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    refusing = {"now": False, "calls": 0}
    answer = BaseClient._make_api_call  # type: ignore[attr-defined]

    def ec2_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if refusing["now"]:
            refusing["calls"] += 1
            raise ClientError(REFUSAL, operation)  # type: ignore[arg-type]
        return answer(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", ec2_call)

    def with_credentials(refused: bool) -> Any:
        def make(store: Store) -> Reconciler:
            refusing["now"] = refused
            return reconciler(store, moto_server, tmp_path, clock)
        return make

    fails_then_heals(tmp_path, clock, make_request,
                     broken=with_credentials(True), fixed=with_credentials(False),
                     says="AuthFailure",
                     secret=fake_credentials()["AWS_SECRET_ACCESS_KEY"])
    assert refusing["calls"] > 0

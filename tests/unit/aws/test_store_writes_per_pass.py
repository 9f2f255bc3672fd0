"""What one launch pass of the AWS driver costs the store: ensure-instance is a
found-again step (``Step.found_again``), stored with wait-running's outcome, and
no version read is made before wait-running, which makes no machine."""

from __future__ import annotations

from talprov.providers.types import Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.runner import RequestRunner
from talprov.testing import MemoryProgressStorage
from tests.unit.aws.helpers import Harness, make_request

RIDS = ("w0", "w1", "w2")


def test_a_launch_pass_makes_two_writes_and_no_version_read(harness: Harness) -> None:
    storage = MemoryProgressStorage()
    for rid in RIDS:
        storage.add(make_request(rid))
    runner = RequestRunner(harness.provider, harness.loop.owner, harness.runtime, storage,
                           StepPolicy())
    works = [runner.prepare(record, None) for rid in RIDS
             if (record := storage.get_request(rid)) is not None]
    runner.advance([w for w in works if w is not None])

    assert len(harness.instances()) == len(RIDS)
    records = [storage.get_request(rid) for rid in RIDS]
    # moto runs an instance at once: all provisioned in this one pass.
    assert [r.stage for r in records if r is not None] == [Stage.PROVISIONED] * len(RIDS)
    assert storage.transactions == 2
    # Review: a version read ran before wait-running, which creates nothing.
    assert storage.version_reads == 0

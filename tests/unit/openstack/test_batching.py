"""each_as_needed: requests whose share makes no call run in the caller's thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from talprov.openstack.batching import each_as_needed
from talprov.providers.errors import Transient
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import MachineRequest, Owner


def _ctx(rid: str, tmp_path: Path) -> StepContext[Any, Any]:
    request = MachineRequest(id=rid, provider="os-test", talos_version="v1.13.9")
    return StepContext(request=request, data=None, state=None,
                       owner=Owner("inst", "os-test"),
                       runtime=Runtime(installation="inst", cache_dir=tmp_path))


def test_only_requests_that_may_call_get_threads_and_outcomes_stay_in_order(
        tmp_path: Path) -> None:
    ctxs = [_ctx(rid, tmp_path) for rid in ("near-1", "far-1", "near-2", "far-2", "bad")]
    ran_in: dict[str, int] = {}

    def run(ctx: StepContext[Any, Any]) -> str:
        ran_in[ctx.request.id] = threading.get_ident()
        if ctx.request.id == "bad":
            raise Transient("busy")
        return ctx.request.id.upper()

    outcomes = each_as_needed(run, ctxs, lambda ctx: ctx.request.id.startswith("far"))

    assert outcomes[:4] == ["NEAR-1", "FAR-1", "NEAR-2", "FAR-2"]
    assert isinstance(outcomes[4], Transient)
    here = threading.get_ident()
    assert ran_in["near-1"] == ran_in["near-2"] == ran_in["bad"] == here
    assert ran_in["far-1"] != here
    assert ran_in["far-2"] != here

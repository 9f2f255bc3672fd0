"""Proxmox deletions under faults: small attempts, and no attempt stuck on a failed task
(issue 15, the chaos long mode's stuck deletion).

Before: once the VM was gone, each attempt listed the VMs, deleted the seed ISO and
read its task, so one fault in three calls failed the whole attempt (about half of
them at 20% faults), and a delete task that ended in ``TASK ERROR`` was read again
on every attempt, failing it for ever.
"""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.types import Owner
from talprov.proxmox.errors import TaskFailed
from talprov.proxmox.provider import ProxmoxProvider
from talprov.testing import FakeClock
from tests.driving import context, deprovision, provision
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request


def _api_calls(fakepve: FakePveServer) -> int:
    return len(fakepve.control("requests"))


def test_each_attempt_after_the_vm_is_gone_makes_at_most_two_calls(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctx = context(provider, machine_request("small-steps"), owner)
    provision(provider, [ctx], clock)
    # Delete until the VM is gone (stop, delete, its task).
    while fakepve.vms():
        result = provider.deprovision(ctx)
        assert result is not None
        clock.sleep(result.after)
    calls = []
    while True:
        before = _api_calls(fakepve)
        result = provider.deprovision(ctx)
        calls.append(_api_calls(fakepve) - before)
        if result is None:
            break
        clock.sleep(result.after)
    assert max(calls) <= 2, calls
    files = fakepve.control("storages")["local"]["files"]
    assert not [f for f in files if "talprov-seed" in f]
    assert ctx.state.seed_removed


def test_a_delete_task_that_failed_is_started_again(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctx = context(provider, machine_request("locked"), owner)
    provision(provider, [ctx], clock)
    real_delete, real_status = provider.client.delete, provider.client.task_status
    failed_upid = "UPID:pve1:0000FFFF:00000000:00000000:qmdestroy:100:root@pam:"

    def delete_once_failing(what: str, path: str, **params: Any) -> Any:
        if "/qemu/" in path and not hasattr(delete_once_failing, "done"):
            delete_once_failing.done = True  # type: ignore[attr-defined]
            return failed_upid  # PVE took the delete; its task will fail
        return real_delete(what, path, **params)

    def status(node: str, upid: str) -> Any:
        if upid == failed_upid:  # a failed task stays failed
            return {"status": "stopped", "exitstatus": "VM is locked (backup)"}
        return real_status(node, upid)

    provider.client.delete = delete_once_failing  # type: ignore[method-assign]
    provider.client.task_status = status  # type: ignore[method-assign]
    failures = 0
    for _ in range(50):
        try:
            result = provider.deprovision(ctx)
        except TaskFailed:
            failures += 1
            continue
        if result is None:
            break
        clock.sleep(result.after)
    else:
        pytest.fail("deprovision did not finish after its delete task failed")
    assert failures == 1
    assert fakepve.vms() == []
    deprovision(provider, ctx, clock)  # idempotent once gone

"""A clone that vCenter refuses because a VM of the request's name exists.

Real vCenter refuses a second clone of the same name (``DuplicateName``); vcsim
renames instead, so the refusal is injected at the SOAP layer here. Before, the
fault was "invalid request" and the request failed for good while its first
clone, whose answer had been lost, went on to make the VM.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pyVim import task as pyvim_task

from talprov.providers.errors import InvalidRequest, Transient
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import sdk
from talprov.vmware.errors import TaskFailed
from talprov.vmware.provider import VSphereProvider
from tests.driving import Ctx, context, provision
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.soap import intercept_soap

#: The clone task that vCenter ends with DuplicateName (``taken-in-task``).
REFUSED_TASK = "task-refused"


def _clones_answer(monkeypatch: pytest.MonkeyPatch, *answers: str) -> Counter[str]:
    """The n-th CloneVM_Task does answers[n]: "lost" (vCenter clones, the answer is
    lost), "taken" (refused: DuplicateName, nothing done), "taken-in-task" (a task
    that ends in DuplicateName, see ``_refused_in_task``) or "ok"."""

    def answer(name: str, number: int, call: Callable[[], Any]) -> Any:
        if name != "CloneVM_Task" or number > len(answers):
            return call()
        if answers[number - 1] == "taken":
            raise sdk.vim().fault.DuplicateName(name="the request's VM")
        if answers[number - 1] == "taken-in-task":  # the task that vCenter fails
            return sdk.vim().Task(REFUSED_TASK, None)
        result = call()
        if answers[number - 1] == "lost":
            raise ConnectionResetError("injected")
        return result

    return intercept_soap(monkeypatch, answer)


def second_clone_after_a_lost_one(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, second: str,
) -> tuple[Counter[str], Ctx]:
    """Request w1's first clone made the VM but its answer was lost; the next pass
    does not see the VM in vCenter's search index yet, so it clones again and that
    clone answers ``second`` (see :func:`_clones_answer`). The clone calls so far
    and the request's context, for the next :func:`provision`."""
    calls = _clones_answer(monkeypatch, "lost", second)
    ctx = context(provider, machine_request("w1"), owner)
    with pytest.raises(Transient, match="clone VM w1"):
        provision(provider, [ctx], clock)
    find_vm = provider.find_vm
    hidden = {"w1"}
    monkeypatch.setattr(provider, "find_vm", lambda o, rid: None if hidden and hidden.pop()
                        else find_vm(o, rid))
    return calls, ctx


def _waited_for_the_first(provider: VSphereProvider, owner: Owner, calls: Counter[str],
                          ctx: Ctx) -> None:
    assert calls["CloneVM_Task"] == 2
    assert [m.request_id for m in provider.list_machines(owner)] == ["w1"]
    assert ctx.state.vm_moid is not None


def test_a_refused_second_clone_waits_for_the_first(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls, ctx = second_clone_after_a_lost_one(provider, owner, clock, monkeypatch, "taken")

    provision(provider, [ctx], clock)

    _waited_for_the_first(provider, owner, calls, ctx)


def test_a_vm_of_that_name_that_is_someone_elses_fails_the_request_by_name(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wait_for_task: Any = pyvim_task.WaitForTask  # untyped in pyVmomi

    def rename(si: Any) -> None:
        vm = si.content.searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM0")
        wait_for_task(vm.Rename_Task("w2"))

    provider.client.call("rename a VM", rename)
    _clones_answer(monkeypatch, "taken")
    ctx = context(provider, machine_request("w2"), owner)

    with pytest.raises(InvalidRequest, match="a VM named w2 exists in the target folder and "
                                             "is not this request's"):
        provision(provider, [ctx], clock)


def test_a_second_clone_whose_task_fails_on_the_name_waits_for_the_first(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The form vCenter is likely to use: CloneVM_Task answers with a task, and the
    # task ends in DuplicateName.
    calls, ctx = second_clone_after_a_lost_one(provider, owner, clock, monkeypatch,
                                                "taken-in-task")
    task_done = provider.client.task_done

    def refused_in_task(moid: str, what: str) -> Any:
        if moid == REFUSED_TASK:
            raise TaskFailed(f"{what}: DuplicateName", "DuplicateName")
        return task_done(moid, what)

    monkeypatch.setattr(provider.client, "task_done", refused_in_task)

    provision(provider, [ctx], clock)

    _waited_for_the_first(provider, owner, calls, ctx)

"""The look at a clone task reads, in the same round trip, what configure-vm compares
of the new VM; where vCenter will not follow the task's result, the VM is read apart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import sdk
from talprov.vmware.provider import VSphereProvider
from tests.driving import Ctx, context, provision
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms

#: (method, its args, the real call) -> the answer.
Answer = Callable[[str, Any, Callable[[], Any]], Any]


def _intercept(monkeypatch: pytest.MonkeyPatch, answer: Answer) -> Counter[str]:
    """Every SOAP call goes through ``answer`` (which sees its arguments); returns
    each method's call count."""
    from pyVmomi import SoapAdapter

    stub: Any = SoapAdapter.SoapStubAdapter
    calls: Counter[str] = Counter()
    invoke = stub.InvokeMethod

    def intercepted(self: Any, mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        name = str(info.wsdlName)
        calls[name] += 1
        return answer(name, args, lambda: invoke(self, mo, info, args, *rest))

    monkeypatch.setattr(stub, "InvokeMethod", intercepted)
    return calls


def _reads_a_task(args: Any) -> bool:
    """Whether a RetrievePropertiesEx's arguments start at a task."""
    return any(isinstance(o.obj, sdk.vim().Task) for spec in args[0] for o in spec.objectSet)


def _provision(provider: VSphereProvider, owner: Owner, clock: FakeClock,
               request_id: str) -> Ctx:
    ctx = context(provider, machine_request(request_id), owner)
    provision(provider, [ctx], clock)
    return ctx


def _check(vcsim: VcsimServer, ctx: Ctx) -> None:
    """The VM is as the request wants it (read in a session of the test's own)."""
    vm = all_vms(vcsim)[ctx.request.id]
    assert len(vm) == 1
    # vcsim keeps the template's sizes in a clone: configure-vm compared and resized.
    assert (vm[0]["config.hardware"].numCPU, vm[0]["config.hardware"].memoryMB) == (4, 8192)
    assert vm[0]["runtime.powerState"] == "poweredOn"
    assert ctx.state.machine_uuid == vm[0]["config.uuid"]


def test_the_clone_task_and_its_vm_are_read_in_one_round_trip(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _check(vcsim, _provision(provider, owner, clock, "first"))  # imports the template
    calls = _intercept(monkeypatch, lambda _name, _args, call: call())

    ctx = _provision(provider, owner, clock, "second")
    counted = Counter(calls)

    _check(vcsim, ctx)
    # Before: the clone task's info (a Fetch), then the VM's BIOS UUID and sizes
    # (a RetrievePropertiesEx of their own). The Fetches: the reconfigure's and
    # the power-on's task info, and the template's moid (ensure-template looks
    # the template up by name: FindChild; clone-vm, run without a pass's listing,
    # looks for the VM by instance UUID: FindByUuid).
    assert counted == {"CloneVM_Task": 1, "RetrievePropertiesEx": 1, "ReconfigVM_Task": 1,
                       "PowerOnVM_Task": 1, "Fetch": 3, "FindChild": 1, "FindByUuid": 1}


def test_where_vcenter_refuses_to_follow_the_result_the_vm_is_read_apart(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused: list[str] = []

    def answer(name: str, args: Any, call: Callable[[], Any]) -> Any:
        if name == "RetrievePropertiesEx" and _reads_a_task(args):
            refused.append(name)
            raise sdk.vmodl().query.InvalidProperty(name="info.result")
        return call()

    _check(vcsim, _provision(provider, owner, clock, "first"))
    calls = _intercept(monkeypatch, answer)

    second = _provision(provider, owner, clock, "second")
    assert refused == ["RetrievePropertiesEx"]
    calls.clear()
    third = _provision(provider, owner, clock, "third")
    counted = Counter(calls)

    _check(vcsim, second)
    _check(vcsim, third)
    # Asked once: the provider instance reads task and VM apart from then on.
    assert refused == ["RetrievePropertiesEx"]
    assert counted == {"CloneVM_Task": 1, "RetrievePropertiesEx": 1, "ReconfigVM_Task": 1,
                       "PowerOnVM_Task": 1, "Fetch": 4, "FindChild": 1, "FindByUuid": 1}


def test_a_vm_the_answer_leaves_out_is_read_apart(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A vCenter that follows no nested path may answer with the task alone.
    def answer(name: str, args: Any, call: Callable[[], Any]) -> Any:
        result = call()
        if name == "RetrievePropertiesEx" and _reads_a_task(args):
            result.objects = [o for o in result.objects if isinstance(o.obj, sdk.vim().Task)]
        return result

    _check(vcsim, _provision(provider, owner, clock, "first"))
    calls = _intercept(monkeypatch, answer)

    ctx = _provision(provider, owner, clock, "second")
    counted = Counter(calls)

    _check(vcsim, ctx)
    assert counted == {"CloneVM_Task": 1, "RetrievePropertiesEx": 2, "ReconfigVM_Task": 1,
                       "PowerOnVM_Task": 1, "Fetch": 3, "FindChild": 1, "FindByUuid": 1}


def test_an_answer_without_the_task_has_the_vm_looked_up_not_cloned_again(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Taken as a task vCenter forgot: the VM is looked up by its instance UUID.
    # (vCenter answers None when it found nothing to report.)
    def answer(name: str, args: Any, call: Callable[[], Any]) -> Any:
        result = call()
        return None if name == "RetrievePropertiesEx" and _reads_a_task(args) else result

    _check(vcsim, _provision(provider, owner, clock, "first"))
    calls = _intercept(monkeypatch, answer)

    ctx = _provision(provider, owner, clock, "second")
    counted = Counter(calls)

    _check(vcsim, ctx)
    assert counted["CloneVM_Task"] == 1
    assert counted["FindByUuid"] == 2  # before the clone, and after the empty answer

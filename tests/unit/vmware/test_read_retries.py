"""A read that meets a passing vCenter failure is tried again within the call; a
write is not (its step decides, after looking whether the write acted).

Found by the chaos suite at 20% faulted calls: every step reads several times
(property collector, task info, FindByUuid), and any one failed read failed the
whole step and the pass's listing, which the reconciler then retried after 5 s
and more, doubling; most requests had not settled after minutes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from talprov.providers.errors import Transient
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import sdk
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.soap import intercept_soap

Failure = Callable[[], BaseException]


def _system_error() -> BaseException:
    vmodl = sdk.vmodl()
    fault: BaseException = vmodl.fault.SystemError(reason="injected")
    return fault


def _dropped() -> BaseException:
    return ConnectionResetError("injected")


def _fail(monkeypatch: pytest.MonkeyPatch, method: str, times: int,
          failure: Failure, *, acted: bool = False) -> Counter[str]:
    """The first ``times`` calls of ``method`` fail with ``failure()``, before reaching
    vCenter or (``acted``) after vCenter acted; returns every SOAP method's call count."""

    def answer(name: str, number: int, call: Callable[[], Any]) -> Any:
        if name != method or number > times:
            return call()
        if acted:
            call()
        raise failure()

    return intercept_soap(monkeypatch, answer)


@pytest.mark.parametrize("failure", [_system_error, _dropped])
def test_a_listing_that_fails_once_is_read_again(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, failure: Failure,
) -> None:
    provision(provider, [context(provider, machine_request("w1"), owner)], clock)
    calls = _fail(monkeypatch, "RetrievePropertiesEx", 1, failure)
    waited = len(clock.sleeps)

    listed = provider.list_machines(owner)

    assert [m.request_id for m in listed] == ["w1"]
    assert calls["RetrievePropertiesEx"] == 2
    assert len(clock.sleeps) == waited + 1  # through the injected sleeper


def test_finding_a_vm_is_read_again(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provision(provider, [context(provider, machine_request("w1"), owner)], clock)
    calls = _fail(monkeypatch, "FindByUuid", 2, _system_error)

    assert provider.find_vm(owner, "w1") is not None
    assert calls["FindByUuid"] == 3


def test_a_read_that_keeps_failing_gives_up_after_a_few_attempts(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider.list_machines(owner)  # logged in
    calls = _fail(monkeypatch, "RetrievePropertiesEx", 100, _system_error)

    with pytest.raises(Transient, match="SystemError"):
        provider.list_machines(owner)
    assert 1 < calls["RetrievePropertiesEx"] <= 5


def test_a_clone_whose_answer_was_lost_is_not_repeated_but_adopted(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A write that failed may have acted (vCenter cloned, the answer was lost):
    # it is not repeated within the call; the step's next attempt looks first.
    calls = _fail(monkeypatch, "CloneVM_Task", 1, _dropped, acted=True)
    ctx = context(provider, machine_request("w1"), owner)

    with pytest.raises(Transient, match="clone VM w1"):
        provision(provider, [ctx], clock)
    assert calls["CloneVM_Task"] == 1
    provision(provider, [ctx], clock)

    assert calls["CloneVM_Task"] == 1
    assert [m.request_id for m in provider.list_machines(owner)] == ["w1"]

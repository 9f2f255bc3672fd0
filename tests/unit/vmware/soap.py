"""Calls to vCenter intercepted at pyVmomi's SOAP layer, for fault tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

#: (SOAP method name, its call number from 1, a function making the real call)
#: -> the answer; the real call is made only if the handler calls it.
Handler = Callable[[str, int, Callable[[], Any]], Any]


def intercept_soap(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> Counter[str]:
    """Every SOAP call goes through ``handler``; returns each method's call count."""
    from pyVmomi import SoapAdapter

    stub: Any = SoapAdapter.SoapStubAdapter
    calls: Counter[str] = Counter()
    invoke = stub.InvokeMethod

    def intercepted(self: Any, mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        name = str(info.wsdlName)
        calls[name] += 1
        return handler(name, calls[name], lambda: invoke(self, mo, info, args, *rest))

    monkeypatch.setattr(stub, "InvokeMethod", intercepted)
    return calls

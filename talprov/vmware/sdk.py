"""pyVmomi's ``vim`` and ``vmodl`` namespaces, imported on first use and typed as ``Any``.

pyVmomi builds its types at run time, so static checkers see untyped calls; the
drivers treat them as dynamic on purpose. Importing lazily keeps talprov usable
without the ``vmware`` extra installed.
"""

from __future__ import annotations

from typing import Any


def vim() -> Any:
    """The ``pyVmomi.vim`` namespace."""
    from pyVmomi import vim as namespace

    return namespace


def vmodl() -> Any:
    """The ``pyVmomi.vmodl`` namespace."""
    from pyVmomi import vmodl as namespace

    return namespace


def vm_ref(si: Any, moid: str) -> Any:
    """The VirtualMachine ``moid`` as a reference on ``si``'s session (no call is made)."""
    return vim().VirtualMachine(moid, si._stub)

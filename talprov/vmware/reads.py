"""What configure-vm compares, read by the clone step's worker once its clone ended.

The clones of a batch end one after another (vCenter copies each from the one
template), and configure-vm used to read all of the batch's VMs in one round
trip after the last of them, with nothing else going on. Reading each VM in the
worker whose clone just ended hides those reads behind the clones still running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from talprov.providers.errors import ProviderError
from talprov.vmware import sdk
from talprov.vmware.client import VSphereClient

log = logging.getLogger(__name__)

#: What configure-vm compares with the request.
CONFIGURE_PATHS = ("config.hardware", "config.extraConfig", "config.uuid")
#: Seconds an early read stays usable: configure-vm normally follows in the same
#: pass; one that comes later (its pass was cut short) reads the VM afresh.
EARLY_READ_SECONDS = 30.0
#: Early reads kept at most (those nobody took are dropped beyond this).
EARLY_READS_KEPT = 1024

Props = dict[str, Any]


class ConfigureReads:
    """The configure-vm properties of VMs, read early or in one batch. Thread-safe."""

    def __init__(self, client: VSphereClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self._early: dict[str, tuple[float, Props]] = {}
        self._lock = threading.Lock()

    def _read(self, what: str, moids: Sequence[str]) -> dict[str, Props]:
        vim = sdk.vim()

        return self.client.call(what, lambda si: self.client.get_many(
            what, [vim.VirtualMachine(m, si._stub) for m in moids], CONFIGURE_PATHS))

    def read_early(self, moid: str) -> None:
        """Read a VM whose clone just ended, for its configure step. Never raises: a
        read that failed is made by the configure step instead."""
        try:
            props = self._read(f"read VM {moid}", [moid]).get(moid)
        except ProviderError as exc:
            log.debug("reading VM %s after its clone failed (%s); configure-vm reads it",
                      moid, exc)
            return
        if props:
            with self._lock:
                if len(self._early) >= EARLY_READS_KEPT:
                    self._early.clear()
                self._early[moid] = (self.clock(), props)

    def for_batch(self, moids: Sequence[str]) -> dict[str, Props]:
        """The properties of ``moids``: those read early in the last
        ``EARLY_READ_SECONDS`` (taken: each is used once), the others in one round
        trip when there are several. Never raises: when that read fails (one VM
        removed meanwhile fails it for all) the VMs are left out, and each
        request's step reads its own VM, so only the removed one's sees the error.
        """
        now = self.clock()
        found: dict[str, Props] = {}
        with self._lock:
            for moid in moids:
                at, props = self._early.pop(moid, (0.0, {}))
                if props and now - at <= EARLY_READ_SECONDS:
                    found[moid] = props
        rest = [m for m in moids if m not in found]
        if len(rest) > 1:
            try:
                found.update(self._read("read VMs to configure", rest))
            except ProviderError as exc:
                log.debug("reading %d VMs at once failed (%s); one by one", len(rest), exc)
        return found

    def one(self, moid: str) -> Props:
        """One VM's properties now (one round trip); {} when vCenter returns none.
        Raises ``NotFound`` when it is gone, other ``ProviderError`` subclasses."""
        return self._read(f"read VM {moid}", [moid]).get(moid, {})

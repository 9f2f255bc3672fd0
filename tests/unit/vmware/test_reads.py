"""configure-vm compares VMs read as their clones ended, not in a read after the last."""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import reads
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.unit.vmware.conftest import machine_request


def _record_reads(provider: VSphereProvider, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    configure_reads = provider._configure_reads
    real = configure_reads._read

    def recorded(what: str, moids: Any) -> Any:
        made.append(what)
        return real(what, moids)

    monkeypatch.setattr(configure_reads, "_read", recorded)
    return made


def test_a_batch_configures_from_the_reads_made_as_each_clone_ended(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _record_reads(provider, monkeypatch)
    ctxs = [context(provider, machine_request(name), owner) for name in ("r1", "r2", "r3")]

    provision(provider, ctxs, clock)

    # One read per VM, in its clone's worker; before, configure-vm read all three
    # again after the last clone ("read VMs to configure").
    assert sorted(made) == sorted(f"read VM {c.state.vm_moid}" for c in ctxs)
    for ctx in ctxs:
        assert ctx.state.configured
        assert ctx.state.machine_uuid


def test_an_early_read_too_old_is_not_used(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctxs = [context(provider, machine_request(name), owner) for name in ("r1", "r2")]
    provision(provider, ctxs, clock)  # everything once, so the VMs exist and match
    made = _record_reads(provider, monkeypatch)
    for ctx in ctxs:
        provider._configure_reads.read_early(ctx.state.vm_moid or "")
    clock.sleep(reads.EARLY_READ_SECONDS + 1)

    read = provider._configure_reads.for_batch([c.state.vm_moid or "" for c in ctxs])

    assert made[-1] == "read VMs to configure"
    assert set(read) == {c.state.vm_moid for c in ctxs}
    # Taken once: a second batch finds nothing read early.
    assert provider._configure_reads.for_batch([ctxs[0].state.vm_moid or ""]) == {}

"""configure-vm compares VMs read as their clones ended, not in a read after the last;
such a read is of the sizes and BIOS UUID only, any other of everything."""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import machines, reads
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision, run_step
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, set_extra_config_out_of_band

GIB = 1024**3


def _record_reads(provider: VSphereProvider, monkeypatch: pytest.MonkeyPatch,
                  paths: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """What ``provider``'s configure reads are made for; ``paths``: what each read."""
    made: list[str] = []
    configure_reads = provider._configure_reads
    real = configure_reads._read

    def recorded(what: str, moids: Any, *rest: Any) -> Any:
        made.append(what)
        if paths is not None:
            paths[what] = tuple(rest[0] if rest else reads.CONFIGURE_PATHS)
        return real(what, moids, *rest)

    monkeypatch.setattr(configure_reads, "_read", recorded)
    return made


def _record_kept(provider: VSphereProvider, monkeypatch: pytest.MonkeyPatch
                 ) -> dict[str, tuple[str, ...]]:
    """The properties kept for configure-vm of each VM as its clone ended, by moid."""
    kept: dict[str, tuple[str, ...]] = {}
    configure_reads = provider._configure_reads
    real = configure_reads._keep

    def recorded(moid: str, props: dict[str, Any]) -> None:
        kept[moid] = tuple(props)
        real(moid, props)

    monkeypatch.setattr(configure_reads, "_keep", recorded)
    return kept


def test_a_batch_configures_from_the_reads_made_as_each_clone_ended(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _record_reads(provider, monkeypatch)
    kept = _record_kept(provider, monkeypatch)
    ctxs = [context(provider, machine_request(name), owner) for name in ("r1", "r2", "r3")]

    provision(provider, ctxs, clock)

    # Each VM read with its clone task, in its clone's worker; before, a read of
    # its own ("read VM vm-…"), and before that configure-vm read all three again
    # after the last clone ("read VMs to configure").
    assert made == []
    assert set(kept) == {c.state.vm_moid for c in ctxs}
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


def test_a_vm_read_as_its_clone_ended_is_read_for_sizes_only_and_ends_as_requested(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = _record_kept(provider, monkeypatch)
    ctxs = [context(provider, machine_request(name), owner) for name in ("s1", "s2")]

    provision(provider, ctxs, clock)

    # Before, each read took the whole config.hardware (every device) and
    # extraConfig; the clone applied the spec's devices and extraConfig.
    assert set(kept) == {c.state.vm_moid for c in ctxs}
    assert all(set(paths) <= set(reads.CLONED_PATHS) for paths in kept.values())
    assert all("config.uuid" in paths for paths in kept.values())
    assert "config.hardware" not in reads.CLONED_PATHS
    vms = all_vms(vcsim)
    for ctx in ctxs:
        vm = vms[ctx.request.id][0]
        # vcsim keeps the template's sizes in a clone: reconfigured from the sizes read.
        assert (vm["config.hardware"].numCPU, vm["config.hardware"].memoryMB) == (4, 8192)
        assert vm["disk_bytes"][0] == 30 * GIB  # the clone spec's disk edit
        assert vm["extra"]["talprov-request"] == ctx.request.id  # its extraConfig
        assert ctx.state.machine_uuid == vm["config.uuid"]


def test_a_vm_not_read_as_its_clone_ended_is_compared_in_full(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = {step.name: step for step in provider.steps()}
    ctx = context(provider, machine_request("f1"), owner)
    run_step(steps["ensure-template"], ctx, clock)
    run_step(steps["clone-vm"], ctx, clock)
    # Someone changes the VM, and configure-vm comes too late for the early read
    # (as after a crash, when the VM is adopted and was never read early).
    set_extra_config_out_of_band(vcsim, "f1", {"disk.enableUUID": "FALSE"})
    clock.sleep(reads.EARLY_READ_SECONDS + 1)
    paths: dict[str, tuple[str, ...]] = {}
    _record_reads(provider, monkeypatch, paths)

    run_step(steps["configure-vm"], ctx, clock)

    assert set(paths.values()) == {reads.CONFIGURE_PATHS}
    assert all_vms(vcsim)["f1"][0]["extra"]["disk.enableUUID"] == "TRUE"
    assert ctx.state.configured


def test_needs_resize_compares_cpus_memory_and_cores_per_socket() -> None:
    data = VSphereMachineData.model_validate({"cpu": 4, "memory": 8192, "cores_per_socket": 2})
    sizes = {"config.hardware.numCPU": 4, "config.hardware.memoryMB": 8192,
             "config.hardware.numCoresPerSocket": 2, "config.uuid": "u"}

    assert machines.needs_resize(sizes, data) is None
    # vcsim leaves a zero out of its answer: read as None, so not a match.
    spec = machines.needs_resize({**sizes, "config.hardware.numCoresPerSocket": None}, data)
    assert spec is not None
    assert (spec.numCPUs, spec.memoryMB, spec.numCoresPerSocket) == (4, 8192, 2)
    assert not spec.extraConfig
    assert not spec.deviceChange
    unset = VSphereMachineData.model_validate({"cpu": 4, "memory": 8192})
    assert machines.needs_resize({**sizes, "config.hardware.numCoresPerSocket": 7}, unset) is None
    assert machines.needs_resize({**sizes, "config.hardware.memoryMB": 4096}, unset) is not None

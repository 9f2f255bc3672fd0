"""Which machine a bare-metal request gets (QA: a machine with no BMC address was
allocated first by name, and the request then failed at set-pxe: nothing could
power it)."""

from __future__ import annotations

from pathlib import Path

from talprov.baremetal.data import BareMetalMachineData
from talprov.baremetal.inventory import BmcInfo
from talprov.baremetal.provider import allocation_candidates  # the pure half of allocate
from talprov.providers.types import Stage
from tests.unit.baremetal.test_provider import Setup


def test_a_machine_without_a_bmc_is_skipped(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    # "a0" sorts before m0 and m1 and matches every request: it used to be taken.
    s.inventory.add("a0", uuid="00000000-0000-4000-8000-0000000000a0", macs=[],
                    bmc=BmcInfo(), labels={"rack": "r1"}, cpus=8)
    s.request("r1")
    record = s.settle("r1", Stage.PROVISIONED, Stage.FAILED)
    assert record.stage == Stage.PROVISIONED, record.error
    assert record.infra_id == "m0"
    held = s.inventory.get("a0")
    assert held is not None
    assert held.request_id is None


def test_a_request_that_only_fits_machines_without_a_bmc_says_why_it_waits(
        tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.inventory.add("a0", uuid="00000000-0000-4000-8000-0000000000a0", macs=[],
                    bmc=BmcInfo(), labels={"rack": "r9"})
    s.request("r1", selector={"rack": "r9"})
    record = s.settle("r1", Stage.FAILED)
    assert "a0 matches but has no BMC address" in (record.error or "")
    assert "talprov baremetal set a0 --bmc" in (record.error or "")


def test_candidates_are_in_name_order_whatever_the_listing_order(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.inventory.add("a0", uuid=None, macs=["52:54:00:00:00:a0"], bmc=BmcInfo())
    machines = s.inventory.machines()
    wanted = BareMetalMachineData()
    assert allocation_candidates(machines, wanted) == (["m0", "m1"], ["a0"])
    assert allocation_candidates(list(reversed(machines)), wanted) == (["m0", "m1"], ["a0"])
    assert allocation_candidates(machines, BareMetalMachineData(min_cpus=4)) == (["m1"], [])

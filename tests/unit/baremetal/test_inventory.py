"""The inventory: atomic allocation, single-use configs, discovery, administration."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from talprov.baremetal.inventory import (
    BmcInfo,
    BootPlan,
    Inventory,
    InventoryError,
    MachineStatus,
    normalize_mac,
)

UUID_A = "6B4A1C2D-0000-4000-8000-00000000000A"
PLAN = BootPlan("http://b/k", "http://b/i", ("talos.platform=metal",))


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    inv = Inventory(tmp_path / "inv.sqlite")
    for i in range(3):
        inv.add(f"m{i}", uuid=UUID_A.replace("A", str(i)) if i else UUID_A,
                macs=[f"52-54-00-00-00-0{i}"], bmc=BmcInfo(address="127.0.0.1"),
                labels={"rack": "r1" if i < 2 else "r2"}, cpus=4 * (i + 1))
    return inv


def test_file_is_private(inventory: Inventory) -> None:
    assert stat.S_IMODE(inventory.path.stat().st_mode) == 0o600


def test_concurrent_allocation_gives_each_machine_once(inventory: Inventory) -> None:
    names = [m.name for m in inventory.machines()]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: inventory.allocate(f"r{i}", "o", names), range(8)))
    winners = [(r.name, r.request_id) for r in results if r is not None]
    assert sorted(n for n, _ in winners) == ["m0", "m1", "m2"]
    assert len({rid for _, rid in winners}) == 3
    assert sum(r is None for r in results) == 5


def test_allocation_is_idempotent_per_request(inventory: Inventory) -> None:
    first = inventory.allocate("req", "o", ["m1", "m2"])
    # A retry after a crash gets the same machine back, even with other candidates.
    again = inventory.allocate("req", "o", ["m2"])
    assert first is not None
    assert again is not None
    assert first.name == again.name == "m1"


def test_cordoned_and_discovered_are_not_allocated(inventory: Inventory) -> None:
    inventory.cordon("m0")
    found = inventory.discovered("aaaaaaaa-0000-4000-8000-000000000001", "52:54:00:ff:00:01")
    assert found is not None
    assert found.status == MachineStatus.DISCOVERED
    assert inventory.allocate("req", "o", ["m0", found.name]) is None
    inventory.accept("m0")
    held = inventory.allocate("req", "o", ["m0"])
    assert held is not None
    assert held.name == "m0"


def test_config_is_handed_out_once_and_only_with_the_token(inventory: Inventory) -> None:
    machine = inventory.allocate("req", "o", ["m0"])
    assert machine is not None
    inventory.set_install("m0", "req", PLAN, "secret-config")
    inventory.note_script("m0", "tok-1")
    inventory.note_script("m0", "tok-2")  # a new boot script replaces the token
    assert inventory.take_config(UUID_A, "tok-1") is None
    assert inventory.take_config(UUID_A.replace("A", "1"), "tok-2") is None
    assert inventory.take_config(UUID_A.lower(), "tok-2") == ("m0", "secret-config")
    assert inventory.take_config(UUID_A, "tok-2") is None
    after = inventory.get("m0")
    assert after is not None
    assert not after.has_config
    assert after.config_fetched_at is not None


def test_wipe_clears_an_unfetched_config_and_release_frees(inventory: Inventory) -> None:
    inventory.allocate("req", "o", ["m0"])
    inventory.set_install("m0", "req", PLAN, "secret-config")
    inventory.start_wipe("m0", "req", PLAN)
    inventory.note_script("m0", "tok")
    assert inventory.take_config(UUID_A, "tok") is None
    machine = inventory.get("m0")
    assert machine is not None
    assert machine.status == MachineStatus.WIPING
    inventory.release("m0", "req")
    machine = inventory.get("m0")
    assert machine is not None
    assert machine.status == MachineStatus.AVAILABLE
    assert machine.request_id is None
    assert machine.boot is None


def test_add_adopts_discovered_and_refuses_duplicates(inventory: Inventory) -> None:
    inventory.discovered(None, "52:54:00:aa:bb:cc")
    adopted = inventory.add("new", uuid=None, macs=["52:54:00:AA:BB:CC"], bmc=BmcInfo())
    assert adopted.status == MachineStatus.AVAILABLE
    assert [m.name for m in inventory.machines()].count("new") == 1
    assert not any(m.status == MachineStatus.DISCOVERED for m in inventory.machines())
    with pytest.raises(InventoryError):
        inventory.add("other", uuid=None, macs=["52:54:00:00:00:01"], bmc=BmcInfo())
    with pytest.raises(InventoryError):
        inventory.add("m0", uuid=None, macs=["52:54:00:00:00:99"], bmc=BmcInfo())


def test_remove_refuses_a_held_machine(inventory: Inventory) -> None:
    inventory.allocate("req", "o", ["m0"])
    with pytest.raises(InventoryError):
        inventory.remove("m0")
    inventory.remove("m2")
    assert inventory.get("m2") is None


def test_public_view_hides_secrets(inventory: Inventory, tmp_path: Path) -> None:
    inventory.add("s", uuid=None, macs=["52:54:00:00:01:00"],
                  bmc=BmcInfo(address="h", username="u", password_ref="hunter2-literal"))
    machine = inventory.get("s")
    assert machine is not None
    assert "hunter2" not in repr(machine.bmc)
    assert "hunter2" not in str(machine.public_view())


def test_mac_normalisation() -> None:
    assert normalize_mac("52-54-00-AA-bb-0C") == "52:54:00:aa:bb:0c"
    with pytest.raises(ValueError, match="not a MAC"):
        normalize_mac("52:54:00")


def test_every_uuid_the_inventory_takes_or_looks_up_follows_one_rule(
        inventory: Inventory) -> None:
    """One rule for SMBIOS UUIDs (canonical_uuid: 8-4-4-4-12 hex digits, stored
    lower-case as Talos prints them), whether a machine is added, discovered, taught
    its UUID or looked up. Upper case is the same UUID; text the rule refuses is no
    UUID: it finds no machine and is never recorded as one's (the lookups lower-cased
    it and recorded it as it came)."""
    assert inventory.get("m0") is not None
    found = inventory.find(UUID_A.lower(), None)
    assert found is not None
    assert found.name == "m0"
    assert found.uuid == UUID_A.lower()
    found_upper = inventory.find(f"  {UUID_A.upper()} ", None)
    assert found_upper is not None
    assert found_upper.name == "m0"
    undashed = "6b4a1c2d000040008000000000000fff"
    braced = "{6B4A1C2D-0000-4000-8000-000000000FFF}"
    stranger = inventory.discovered(undashed, "52:54:00:00:0f:ff")
    assert stranger is not None
    assert stranger.uuid is None
    assert undashed not in stranger.name
    inventory.add("bare", uuid=None, macs=["52:54:00:00:0e:ee"], bmc=BmcInfo())
    inventory.note_script("bare", None, braced)
    bare = inventory.get("bare")
    assert bare is not None
    assert bare.uuid is None
    inventory.note_script("bare", None, braced.strip("{}"))
    taught = inventory.get("bare")
    assert taught is not None
    assert taught.uuid == braced.strip("{}").lower()
    assert inventory.note_wipe_report(undashed, "token") is None
    assert inventory.take_config(braced, "token") is None
    assert inventory.config_refusal(braced, "token", "10.0.0.9") is None

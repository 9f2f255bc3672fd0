"""What ``talprov baremetal add/set/accept`` take and say (QA and review findings):
an ambiguous --bmc, a --uuid or name that no machine can have, a `set` that
changes nothing, and one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from pydantic import ValidationError

from talprov.baremetal.data import BareMetalMachineData
from talprov.baremetal.inventory import Inventory
from talprov.baremetal.records import MACHINE_NAME_PATTERN, check_machine_name
from talprov.errors import ConfigError, pattern_in_words, validate
from talprov.providers.types import STORED
from tests.unit.baremetal.test_cli_operator import block, run

__all__ = ["block"]  # a fixture: pytest finds it by this name

UUID = "4c4c4544-0051-3810-8057-b7c04f4e3332"
PASSWORD = "${env:BMC_PASS}"


def add(block: Path, name: str = "node-1", uuid: str = UUID,
        bmc: str = "ipmi://10.1.0.11") -> Result:
    return run(block, "add", name, "--uuid", uuid, "--bmc", bmc, "--bmc-user", "admin",
               "--bmc-password", PASSWORD)


def one_error_line(result: Result) -> str:
    """The refusal's only line: exit 2, nothing stored, no usage block, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("talprov: error: "), result.output
    return lines[0]


def test_a_bmc_without_a_scheme_is_refused_naming_the_forms(block: Path, tmp_path: Path
                                                            ) -> None:
    # QA: `--bmc 10.1.0.11` was stored as IPMI without a word, although the docs
    # only show ipmi:// and redfish:// URLs; a Redfish BMC added so was never powered.
    line = one_error_line(add(block, bmc="10.1.0.11"))
    assert "--bmc" in line
    assert "'10.1.0.11' has no scheme" in line
    assert "ipmi://10.1.0.11" in line
    assert "redfish://10.1.0.11" in line
    assert not Inventory(tmp_path / "inv.sqlite").machines()


def test_a_bmc_without_a_scheme_never_shows_a_password(block: Path) -> None:
    line = one_error_line(add(block, bmc="admin:s3cret-bare@10.1.0.11"))
    assert "s3cret-bare" not in line
    assert "ipmi://10.1.0.11" in line


@pytest.mark.parametrize(("bmc", "said"), [
    ("ftp://10.1.0.11", "'ftp' is not a BMC scheme"),
    ("ftp://u:s3cret-ftp@10.1.0.11", "'ftp' is not a BMC scheme"),
    ("ipmi://:623", "names no host"),
])
def test_a_wrong_bmc_is_one_sentence_without_the_help_text(block: Path, bmc: str,
                                                           said: str) -> None:
    # Review: the error repeated --help's text in click's usage block.
    line = one_error_line(add(block, bmc=bmc))
    assert "--bmc" in line
    assert said in line
    assert "HOST[:PORT]" not in line
    assert "lab BMC" not in line
    assert "s3cret" not in line


@pytest.mark.parametrize("uuid", ["not-a-uuid", "4c4c4544005138108057b7c04f4e3332",
                                  "{4c4c4544-0051-3810-8057-b7c04f4e3332}",
                                  "4c4c4544-0051-3810-8057-b7c04f4e333"])
def test_a_uuid_that_is_not_canonical_is_refused(block: Path, tmp_path: Path, uuid: str
                                                 ) -> None:
    # QA: `--uuid not-a-uuid` was stored; the machine could never be recognised,
    # since iPXE and Talos give the SMBIOS UUID as 8-4-4-4-12 hex digits.
    line = one_error_line(add(block, uuid=uuid))
    assert "--uuid" in line
    assert repr(uuid) in line
    assert not Inventory(tmp_path / "inv.sqlite").machines()


def test_an_upper_case_uuid_is_stored_as_talos_reports_it(block: Path, tmp_path: Path) -> None:
    # go-smbios (Talos) and iPXE's ${uuid} print lower case; Dell and HPE BMCs print
    # upper case. Both name the same machine.
    assert add(block, uuid=UUID.upper()).exit_code == 0
    machine = Inventory(tmp_path / "inv.sqlite").get("node-1")
    assert machine is not None
    assert machine.uuid == UUID


@pytest.mark.parametrize("name", ["Node-1", "node_1", "node.1", "node-", "n" * 64])
def test_a_machine_name_follows_the_id_rule(block: Path, tmp_path: Path, name: str) -> None:
    # QA: `add Node-1` was accepted, while request ids, set and cluster names are
    # DNS labels; the name becomes the request's infra id.
    line = one_error_line(add(block, name=name))
    assert f"machine name {name!r} must be lowercase letters, digits and '-'" in line
    assert not Inventory(tmp_path / "inv.sqlite").machines()


def test_a_mac_that_is_not_one_names_mac(block: Path) -> None:
    result = run(block, "add", "node-1", "--mac", "52:54:00:zz:00:01", "--bmc",
                 "ipmi://10.1.0.11", "--bmc-user", "admin", "--bmc-password", PASSWORD)
    assert "--mac" in one_error_line(result)


def test_set_without_options_changes_nothing_and_says_so(block: Path, tmp_path: Path) -> None:
    # QA: `set node-1` printed "updated the BMC of node-1" and changed nothing.
    assert add(block).exit_code == 0
    line = one_error_line(run(block, "set", "node-1"))
    assert "nothing to change" in line
    assert "--bmc" in line
    assert "updated" not in line


def test_set_with_the_same_details_says_nothing_changed(block: Path) -> None:
    assert add(block).exit_code == 0
    result = run(block, "set", "node-1", "--bmc", "ipmi://10.1.0.11", "--bmc-user", "admin")
    assert result.exit_code == 0, result.output
    assert "nothing changed" in result.output
    assert "updated" not in result.output
    changed = run(block, "set", "node-1", "--bmc", "redfish://10.1.0.12")
    assert changed.exit_code == 0, changed.output
    assert "updated the BMC of node-1" in changed.output


def test_set_on_a_machine_without_a_bmc_asks_for_one(block: Path, tmp_path: Path) -> None:
    # A discovered machine has no BMC: giving only a user used to fail on the empty URL.
    found = Inventory(tmp_path / "inv.sqlite").discovered(UUID, None)
    assert found is not None
    line = one_error_line(run(block, "set", found.name, "--bmc-user", "ops"))
    assert "has no BMC address yet" in line
    assert "--bmc" in line


def test_accept_reads_only_that_machine(block: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: the no-BMC warning read every machine of the inventory to find one.
    found = Inventory(tmp_path / "inv.sqlite").discovered(UUID, None)
    assert found is not None

    def every_machine(_self: Inventory) -> list[object]:
        raise AssertionError("accept listed the whole inventory")

    monkeypatch.setattr(Inventory, "machines", every_machine)
    result = run(block, "accept", found.name)
    assert result.exit_code == 0, result.output
    assert f"warning: {found.name} has no BMC address" in result.stderr


@pytest.mark.parametrize("name", ["Rack1-M1", "m1_", "-m1", "m" * 64, ""])
def test_provider_data_machine_follows_the_machine_name_rule(name: str) -> None:
    """provider_data.machine names an inventory machine: the same rule as the names
    `baremetal add` takes, said in words and naming the field (QA: any text was
    taken, and the request then waited for a machine no name could match)."""
    with pytest.raises(ConfigError) as refused:
        validate(BareMetalMachineData, {"machine": name}, "r1.yaml: provider_data")
    assert refused.value.where == "r1.yaml: provider_data.machine"
    assert pattern_in_words(MACHINE_NAME_PATTERN) in str(refused.value)


def test_provider_data_machine_takes_every_name_add_takes() -> None:
    for name in ("m1", "rack-1-m0", "a" * 63):
        check_machine_name(name)
        assert validate(BareMetalMachineData, {"machine": name}, "r").machine == name


@pytest.mark.parametrize("name", ["Rack1-M1", "m1_"])
def test_a_stored_request_naming_a_machine_added_before_the_rule_stays_readable(
        name: str) -> None:
    """The runner reads a stored request's provider_data with context=STORED: one
    naming an inventory machine added before the name rule must go on to its next
    step (before, the pattern ignored STORED, and the request failed there), as
    stored labels keep the old rule."""
    stored = BareMetalMachineData.model_validate({"machine": name}, context=STORED)
    assert stored.machine == name
    schema = BareMetalMachineData.model_json_schema()
    assert schema["properties"]["machine"]["anyOf"][0]["pattern"] == MACHINE_NAME_PATTERN


def test_the_reviewers_stored_machine_name_stays_readable() -> None:
    stored = BareMetalMachineData.model_validate({"machine": "Node_1"}, context=STORED)
    assert stored.machine == "Node_1"
    with pytest.raises(ValidationError, match="machine"):
        BareMetalMachineData.model_validate({"machine": "Node_1"})


@pytest.mark.parametrize("option", ["--cpus", "--memory-mib", "--disk-gb"])
@pytest.mark.parametrize("value", ["0", "-1", "99999999999999999999999"])
def test_a_machine_size_out_of_range_is_a_usage_error(block: Path, tmp_path: Path,
                                                      option: str, value: str) -> None:
    # QA: the provider data's min_cpus, min_memory_mib and min_disk_gb take 1 and
    # more, but `add` stored 0 and -1, and a number too large for SQLite's INTEGER
    # was an OverflowError traceback. Now click's usage error names the option.
    result = run(block, "add", "node-1", "--uuid", UUID, "--bmc", "ipmi://10.1.0.11",
                 "--bmc-user", "admin", "--bmc-password", PASSWORD, option, value)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output
    assert "from 1 to" in result.output
    assert not Inventory(tmp_path / "inv.sqlite").machines()

"""``talprov baremetal`` inventory commands (the group as registered by the lead)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from talprov.baremetal.inventory import Inventory, MachineStatus
from talprov.cli.baremetal import baremetal


def test_add_list_cordon_accept_remove(tmp_path: Path) -> None:
    block = tmp_path / "bm.yaml"
    block.write_text(yaml.safe_dump({"inventory": str(tmp_path / "inv.sqlite"),
                                     "boot_url": "http://10.0.0.5:8081"}))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(baremetal, ["--file", str(block), *args],
                               env={"BMC_PASS": "s3cret-bmc-pass"})
        assert result.exit_code == 0, result.output
        return result.output

    run("add", "node-1", "--uuid", "6B4A1C2D-0000-4000-8000-00000000000A", "--mac",
        "52:54:00:00:00:01", "--bmc", "ipmi://10.1.0.11:623", "--bmc-user", "admin",
        "--bmc-password", "${env:BMC_PASS}", "--label", "rack=r1", "--cpus", "16")
    Inventory(tmp_path / "inv.sqlite").discovered(None, "52:54:00:00:00:99")
    rows = json.loads(run("list", "-o", "json"))
    assert [(r["name"], r["state"]) for r in rows] == [
        ("discovered-525400000099", "discovered"), ("node-1", "available")]
    assert rows[1]["uuid"] == "6b4a1c2d-0000-4000-8000-00000000000a"
    assert "s3cret" not in json.dumps(rows)
    assert "BMC_PASS" not in json.dumps(rows)
    run("cordon", "node-1")
    assert json.loads(run("list", "-o", "json"))[1]["state"] == "cordoned"
    run("accept", "node-1")
    accepted = runner.invoke(baremetal, ["--file", str(block), "accept",
                                         "discovered-525400000099"])
    assert accepted.exit_code == 0, accepted.output
    # QA: accepted without a word, then every request that took it failed at set-pxe.
    assert "warning: discovered-525400000099 has no BMC address" in accepted.stderr
    machines = Inventory(tmp_path / "inv.sqlite").machines()
    assert [(m.name, m.status, m.cordoned) for m in machines] == [
        ("discovered-525400000099", MachineStatus.AVAILABLE, False),
        ("node-1", MachineStatus.AVAILABLE, False)]
    assert machines[1].bmc.password_ref == "${env:BMC_PASS}"  # stored as a reference
    run("remove", "node-1")
    assert [m.name for m in Inventory(tmp_path / "inv.sqlite").machines()] == [
        "discovered-525400000099"]
    result = runner.invoke(baremetal, ["--file", str(block), "remove", "nope"])
    assert result.exit_code == 1  # an unknown name, as for every command
    assert "no machine" in result.output

"""``talprov baremetal`` as an operator follows docs/providers/baremetal.md (issue 14,
items 7 and 11): no BMC password in clear text, BMC details changed in place, the
audit log readable, failed requests visible in `list`, `serve -v` logging."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from talprov.baremetal.inventory import BmcInfo, Inventory
from talprov.cli.baremetal import baremetal
from talprov.providers.types import Stage
from talprov.store.store import Store
from tests.helpers import Home

UUID = "6b4a1c2d-0000-4000-8000-00000000000a"


@pytest.fixture
def block(tmp_path: Path) -> Path:
    path = tmp_path / "bm.yaml"
    path.write_text(yaml.safe_dump({"inventory": str(tmp_path / "inv.sqlite"),
                                    "boot_url": "http://10.0.0.5:8081"}))
    return path


def run(block: Path, *args: str) -> Result:
    return CliRunner().invoke(baremetal, ["--file", str(block), *args])


def add(block: Path, password: str) -> Result:
    return run(block, "add", "node-1", "--uuid", UUID, "--bmc", "ipmi://10.1.0.11:623",
               "--bmc-user", "admin", "--bmc-password", password)


def test_a_plain_bmc_password_is_refused(block: Path, tmp_path: Path) -> None:
    """Before: stored in clear text in the inventory, exit 0."""
    result = add(block, "hunter2-plain")
    assert result.exit_code == 2, result.output
    assert "secret reference" in result.output
    assert "hunter2-plain" not in result.output
    assert not Inventory(tmp_path / "inv.sqlite").machines()
    assert b"hunter2-plain" not in (tmp_path / "inv.sqlite").read_bytes()


def test_set_changes_bmc_details_in_place(block: Path, tmp_path: Path) -> None:
    """Before: no way but remove (refused while held) and add (refused: exists)."""
    assert add(block, "${env:BMC_OLD}").exit_code == 0
    inventory = Inventory(tmp_path / "inv.sqlite")
    assert inventory.allocate("req-1", "talprov/bm", ["node-1"]) is not None
    result = run(block, "set", "node-1", "--bmc-user", "ops", "--bmc-password",
                 "${file:/run/secrets/bmc}")
    assert result.exit_code == 0, result.output
    machine = inventory.get("node-1")
    assert machine is not None
    assert (machine.bmc.username, machine.bmc.password_ref) == ("ops", "${file:/run/secrets/bmc}")
    assert (machine.bmc.address, machine.bmc.port) == ("10.1.0.11", 623)
    assert machine.request_id == "req-1"  # still held
    refused = run(block, "set", "node-1", "--bmc-password", "plain")
    assert refused.exit_code == 2
    assert run(block, "set", "nope", "--bmc-user", "x").exit_code == 1  # unknown name


def test_audit_shows_refused_config_fetches(block: Path, tmp_path: Path) -> None:
    """Before: only readable with sqlite3 on the inventory file."""
    inventory = Inventory(tmp_path / "inv.sqlite")
    inventory.record_audit("config-refused", uuid=UUID, remote="192.0.2.7")
    inventory.record_audit("config-fetched", machine="node-1", uuid=UUID, remote="192.0.2.8")
    result = run(block, "audit", "--event", "config-refused", "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["event"], r["uuid"], r["remote"]) for r in rows] == [
        ("config-refused", UUID, "192.0.2.7")]
    assert rows[0]["at"].endswith("Z")


def held_machine(home: Home, name: str, request_id: str) -> Inventory:
    """A bare-metal instance "bm" whose machine ``name`` is held by the stored
    request ``request_id``; its inventory."""
    home.providers["bm"] = {"type": "baremetal", "inventory": str(home.root / "inv.sqlite"),
                            "boot_url": "http://127.0.0.1:8081"}
    home.write_config()
    inventory = Inventory(home.root / "inv.sqlite")
    inventory.add(name, uuid=UUID, macs=[], bmc=_bmc())
    request = home.write_request(request_id, provider="bm")
    assert home.invoke("machine", "create", "-f", str(request)).exit_code == 0
    assert inventory.allocate(request_id, "talprov/bm", [name]) is not None
    return inventory


def test_list_says_a_failed_request_still_holds_its_machine(home: Home) -> None:
    held_machine(home, "node-1", "bm-1")
    store = Store(home.store_url)
    summary = store.summaries([Stage.PENDING])[0]
    store.note_observed("bm-1", expected_version=summary.version, stage=Stage.FAILED,
                        error="boom")
    rows = json.loads(home.invoke("baremetal", "list", "-o", "json").stdout)
    assert rows[0]["state"] == "allocated"
    assert "machine delete bm-1" in rows[0]["note"]


def _bmc() -> BmcInfo:
    return BmcInfo(address="10.1.0.11", password_ref="${env:X}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_serve_verbose_logs_requests_with_the_uuid(home: Home, tmp_path: Path) -> None:
    """Before: `baremetal serve -v` logged only warnings, and /assets lines had no uuid."""
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "inventory": str(tmp_path / "inv.sqlite"), "boot_url": f"http://127.0.0.1:{port}",
        "listen_address": "127.0.0.1", "listen_port": port, "tftp_enabled": False,
        "mirror_dir": str(tmp_path / "mirror")}))
    proc = subprocess.Popen([sys.executable, "-m", "talprov", "baremetal", "--file",
                             str(config), "serve", "-v"], env=home.env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        sid = "a" * 64
        deadline = time.monotonic() + 30
        while True:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/assets/{sid}/v1.11.5/kernel-amd64",
                                   params={"uuid": UUID}, timeout=2).status_code
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "boot server did not start"
                time.sleep(0.1)
        assert status == 404
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    lines = [line for line in stderr.splitlines() if "/assets/" in line]
    assert lines, stderr
    assert f"uuid={UUID}" in lines[0]


def test_without_a_bare_metal_instance_the_error_says_what_to_do(home: Home) -> None:
    result = home.invoke("baremetal", "list")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "no bare-metal instance is configured" in line
    assert "--file" in line
    assert "[]" not in line
    home.providers["rack1"] = {"type": "baremetal", "inventory": str(home.root / "a.sqlite"),
                               "boot_url": "http://10.0.0.5:8081"}
    home.providers["rack2"] = {**home.providers["rack1"],
                               "inventory": str(home.root / "b.sqlite")}
    home.write_config()
    several = home.invoke("baremetal", "list")
    assert several.exit_code == 2
    assert "name one of rack1, rack2" in several.output


@pytest.mark.parametrize(("bmc", "shown"), [
    (BmcInfo(kind="redfish", address="http://127.0.0.1:18000", port=18000),
     "redfish+http://127.0.0.1:18000"),
    (BmcInfo(kind="redfish", address="10.1.0.11"), "redfish://10.1.0.11"),
    (BmcInfo(kind="ipmi", address="10.1.0.12", port=6230), "ipmi://10.1.0.12:6230"),
    (BmcInfo(), ""),  # a discovered machine: no BMC known yet
])
def test_a_bmc_is_shown_as_bmc_takes_it(bmc: BmcInfo, shown: str) -> None:
    # QA: redfish+http://127.0.0.1:18000 was listed as
    # redfish://http://127.0.0.1:18000:18000, and a discovered machine as ipmi://:.
    assert bmc.url() == shown


def test_an_unset_bmc_password_holds_the_request_back_instead_of_failing_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # QA: an unset ${env:BMC_PASS} failed the request for good at set-pxe, while an
    # unset factory password or missing AWS credentials only hold a request back.
    from talprov.baremetal.config import BareMetalConfig
    from talprov.baremetal.powers import power_driver
    from talprov.baremetal.records import InventoryMachine
    from talprov.providers.errors import InstanceUnavailable

    monkeypatch.delenv("BMC_PASS_UNSET", raising=False)
    inventory = Inventory(tmp_path / "inv.sqlite")
    inventory.add("node-9", uuid=UUID, macs=[],
                  bmc=BmcInfo(address="10.1.0.19", password_ref="${env:BMC_PASS_UNSET}"))
    machine = next(m for m in inventory.machines() if m.name == "node-9")
    assert isinstance(machine, InventoryMachine)
    with pytest.raises(InstanceUnavailable) as caught:
        power_driver(machine, BareMetalConfig(inventory=str(tmp_path / "inv.sqlite"),
                                              boot_url="http://127.0.0.1:8081"))
    assert not caught.value.permanent
    assert "BMC_PASS_UNSET" in str(caught.value)


@pytest.mark.parametrize("url", ["redfish+http://u:s3cret-in-url@10.1.0.16",
                                 "redfish://admin:s3cret-in-url@10.9.9.9"])
def test_a_bmc_url_with_a_user_or_password_is_refused(block: Path, tmp_path: Path,
                                                      url: str) -> None:
    # QA: `add` stored the URL's password and `list` showed it; `set` dropped it
    # without a word.
    added = run(block, "add", "node-6", "--uuid", UUID, "--bmc", url, "--bmc-user", "u",
                "--bmc-password", "${env:BMC_PASS}")
    assert added.exit_code == 2, added.output
    assert "--bmc-password" in added.output
    assert "s3cret-in-url" not in added.output
    assert not Inventory(tmp_path / "inv.sqlite").machines()
    assert add(block, "${env:BMC_PASS}").exit_code == 0
    changed = run(block, "set", "node-1", "--bmc", url)
    assert changed.exit_code == 2, changed.output
    assert "s3cret-in-url" not in changed.output
    assert b"s3cret-in-url" not in (tmp_path / "inv.sqlite").read_bytes()


def test_a_bmc_port_that_is_not_a_number_names_bmc(block: Path) -> None:
    # QA: "Port could not be cast to integer value as 'notaport'", naming no option.
    result = run(block, "add", "node-7", "--uuid", UUID, "--bmc", "ipmi://10.1.0.17:notaport",
                 "--bmc-user", "u", "--bmc-password", "${env:BMC_PASS}")
    assert result.exit_code == 2, result.output
    assert "--bmc: the port must be a number" in result.output


def test_a_forgotten_requests_machine_is_named_and_released_on_demand(home: Home) -> None:
    # QA: after `machine forget`, the machine stayed allocated to the gone request
    # with an empty note; remove refused ("held by request"), accept and cordon did
    # not free it, and no command did.
    inventory = held_machine(home, "node-2", "i1")
    early = home.invoke("baremetal", "release", "node-2")
    assert early.exit_code == 2, early.output  # the request still exists: delete it instead
    assert "machine delete i1" in early.output
    forgotten = home.invoke("machine", "forget", "i1", "--reason", "qa")
    assert forgotten.exit_code == 0, forgotten.output
    assert "stays held, not wiped, until `talprov baremetal release NAME`" in forgotten.output
    rows = json.loads(home.invoke("baremetal", "list", "-o", "json").stdout)
    assert "baremetal release node-2" in rows[0]["note"]
    released = home.invoke("baremetal", "release", "node-2")
    assert released.exit_code == 0, released.output
    assert "not wiped" in released.output
    machine = inventory.get("node-2")
    assert machine is not None
    assert (machine.request_id, machine.status, machine.cordoned) == (None, "available", True)
    assert inventory.audit()[-1].event == "released"
    rows = json.loads(home.invoke("baremetal", "list", "-o", "json").stdout)
    assert rows[0]["state"] == "cordoned"
    assert "not wiped" in rows[0]["note"]
    assert home.invoke("baremetal", "accept", "node-2").exit_code == 0
    assert json.loads(home.invoke("baremetal", "list", "-o", "json").stdout)[0]["note"] == ""
    assert home.invoke("baremetal", "remove", "node-2").exit_code == 0


def test_an_inventory_in_a_missing_directory_is_a_config_error(home: Home) -> None:
    # QA: `inventory: /nonexistent/dir/inv.sqlite` (a typo) created the directories
    # (as root); `baremetal list` printed (none), `providers --health` said ok.
    missing = home.root / "nonexistent" / "dir"
    home.providers["bm"] = {"type": "baremetal", "inventory": str(missing / "inv.sqlite"),
                            "boot_url": "http://127.0.0.1:8081"}
    home.write_config()
    listed = home.invoke("baremetal", "list")
    assert listed.exit_code == 2, listed.output
    assert f"inventory: directory {missing} does not exist" in listed.output
    assert "Traceback" not in listed.output
    health = home.invoke("providers", "--health", "-o", "json")
    assert health.exit_code == 1, health.output
    row = next(r for r in json.loads(health.stdout) if r["name"] == "bm")
    assert f"directory {missing} does not exist" in json.dumps(row)
    assert not missing.parent.exists()
    # An existing directory still gets a new inventory file, private.
    home.providers["bm"]["inventory"] = str(home.root / "inv.sqlite")
    home.write_config()
    assert home.invoke("baremetal", "list").exit_code == 0
    assert (home.root / "inv.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_missing_ipxe_dir_is_one_line_naming_it(home: Home, tmp_path: Path) -> None:
    # QA: serve with dhcp set and ipxe_dir: /nonexistent printed tftpy's traceback
    # ("The tftproot does not exist."), exit 1; config check said nothing.
    block = {"inventory": str(tmp_path / "inv.sqlite"), "boot_url": "http://127.0.0.1:8081",
             "listen_address": "127.0.0.1", "listen_port": free_port(), "tftp_port": free_port(),
             "ipxe_dir": str(tmp_path / "nonexistent"),
             "dhcp": {"interface_address": "127.0.0.1", "interface": "lo"}}
    path = tmp_path / "bm.yaml"
    path.write_text(yaml.safe_dump(block))
    served = subprocess.run([sys.executable, "-m", "talprov", "baremetal", "--file", str(path),
                             "serve"], capture_output=True, text=True, timeout=30, check=False)
    assert served.returncode == 2, served.stderr
    assert "Traceback" not in served.stderr
    assert served.stderr.strip().count("\n") == 0, served.stderr
    assert f"ipxe_dir: {tmp_path / 'nonexistent'} does not exist" in served.stderr
    home.providers["bm"] = {"type": "baremetal", **block}
    home.write_config()
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 1, checked.output
    row = next(r for r in json.loads(checked.stdout) if r["part"] == "providers.bm")
    assert "ipxe_dir" in str(row["result"])


def test_audit_refuses_an_unknown_event(block: Path) -> None:
    # QA: `audit --event nosuch` printed nothing, exit 0 (a typo looked like "none").
    result = run(block, "audit", "--event", "nosuch")
    assert result.exit_code == 2, result.output
    assert "unknown event 'nosuch'" in result.output
    assert "config-refused" in result.output
    assert run(block, "audit", "--event", "report-wipe-done").exit_code == 0


def test_every_audit_event_recorded_is_known() -> None:
    from talprov.baremetal.records import AUDIT_EVENTS

    root = Path(__file__).parents[3] / "talprov" / "baremetal"
    text = "".join(p.read_text() for p in root.rglob("*.py"))
    literal = set(re.findall(r'record_audit\(\s*"([a-z-]+)"', text))
    literal |= set(re.findall(r'VALUES \(\?, \?, \?, \?\)",\s*\(self\.clock\(\), "([a-z-]+)"',
                              text))
    from talprov.baremetal.boot.binding import ALERT_KINDS

    assert "released" in literal
    assert literal | set(ALERT_KINDS) <= set(AUDIT_EVENTS)


def test_a_taken_boot_server_port_is_named(tmp_path: Path) -> None:
    # QA: "cannot start the boot server: [Errno 98] Address already in use", which
    # named neither the address nor the port (HTTP, config TLS, TFTP, DHCP?).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "bm.yaml"
        path.write_text(yaml.safe_dump({
            "inventory": str(tmp_path / "inv.sqlite"), "boot_url": "http://127.0.0.1:8081",
            "listen_address": "127.0.0.1", "listen_port": port, "tftp_enabled": False}))
        served = subprocess.run([sys.executable, "-m", "talprov", "baremetal", "--file",
                                 str(path), "serve"],
                                capture_output=True, text=True, timeout=30, check=False)
    assert served.returncode == 2, served.stderr
    assert f"HTTP on 127.0.0.1:{port}" in served.stderr
    assert "Traceback" not in served.stderr

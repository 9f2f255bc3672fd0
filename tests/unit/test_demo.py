"""`talprov demo`, as README's quick start runs it: a real process, no account.

Each run gets its own TMPDIR, so the test can see that the demo removed its
work directory and that no emulator process it started (they all name a path
below that directory in their command line or environment) outlives it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from talprov import demo_platforms
from talprov.demo_platforms import choose_platforms
from tests.emulators.vcsim.fixture import vcsim_binary


def run_demo(tmp_path: Path, *args: str, **env_extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != demo_platforms.VCSIM_ENV}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), **env_extra)
    proc = subprocess.run(
        [sys.executable, "-m", "talprov", "demo", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def processes_mentioning(path: Path) -> list[str]:
    """Command lines of live processes whose command line or environment names ``path``."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def assert_cleaned_up(tmp_path: Path) -> None:
    assert processes_mentioning(tmp_path) == []
    assert list(tmp_path.glob("talprov-demo-*")) == []


def table_rows(output: str, platform: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{platform} ")]


def test_demo_provisions_checks_and_cleans_up(tmp_path: Path) -> None:
    code, output = run_demo(tmp_path, "--platforms", "aws", "--workers", "2")
    assert code == 0, output
    assert "demo: control-planes 3/3  workers 2/2" in output
    rows = table_rows(output, "aws")
    assert len(rows) == 5
    assert all("matches config" in row and "imds required" in row for row in rows)
    assert table_rows(output, "proxmox") == table_rows(output, "vmware") == []
    assert "all demo machines removed." in output
    assert "Traceback" not in output
    assert_cleaned_up(tmp_path)


def test_demo_also_provisions_on_proxmox_and_vsphere(tmp_path: Path) -> None:
    # No --platforms: every platform whose emulator is present (fakepve is in
    # the venv; TALPROV_VCSIM names the simulator build.sh made).
    code, output = run_demo(tmp_path, "--control-planes", "1", "--workers", "2",
                            TALPROV_VCSIM=str(vcsim_binary()))
    assert code == 0, output
    assert "skipped" not in output
    assert ("demo: control-planes 1/1  proxmox-workers 2/2  vmware-workers 2/2  workers 2/2"
            in output)
    assert len(table_rows(output, "aws")) == 3
    proxmox = table_rows(output, "proxmox")
    assert len(proxmox) == 2
    assert all("proxmox-workers" in r and "running" in r and "seed ISO attached" in r
               and "smbios uuid, boot ISO" in r for r in proxmox)
    vmware = table_rows(output, "vmware")
    assert len(vmware) == 2
    assert all("vmware-workers" in r and "poweredOn" in r and "matches config" in r
               and "disk.enableUUID" in r for r in vmware)
    assert "MISMATCH" not in output
    assert "demo finished: machines created, checked and destroyed." in output
    assert "Traceback" not in output
    assert_cleaned_up(tmp_path)


def test_a_failing_emulator_stops_the_ones_already_started(tmp_path: Path) -> None:
    # moto and fakepve start; the "simulator" exits at once: all must be stopped.
    code, output = run_demo(tmp_path, "--platforms", "aws,proxmox,vmware",
                            TALPROV_VCSIM="/bin/false")
    assert code == 1, output
    assert "cannot start the vmware emulator: vcsim exited with status 1" in output
    assert "starting a local Proxmox VE emulator (fakepve)..." in output
    assert "Traceback" not in output
    assert_cleaned_up(tmp_path)


def test_a_platform_asked_for_but_missing_is_a_usage_error(tmp_path: Path) -> None:
    code, output = run_demo(tmp_path, "--platforms", "aws,vmware",
                            TALPROV_VCSIM=str(tmp_path / "nothing"))
    assert code == 2, output
    assert "vmware cannot run here" in output
    assert "starting" not in output  # nothing was started
    code, output = run_demo(tmp_path, "--platforms", "aws,openstack")
    assert code == 2, output
    assert "unknown openstack" in output


def test_missing_emulators_are_skipped_with_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_platforms, "fakepve_command", lambda: None)
    monkeypatch.delenv(demo_platforms.VCSIM_ENV, raising=False)
    real_vcsim_binary = demo_platforms.vcsim_binary
    # No TALPROV_VCSIM, and a "checkout" without a built simulator.
    monkeypatch.setattr(demo_platforms, "vcsim_binary",
                        lambda: real_vcsim_binary({}, checkout=tmp_path))
    chosen, skipped = choose_platforms(None)
    assert chosen == ["aws"]
    assert skipped == [
        "proxmox: skipped: fakepve is not installed (pip install fakepve)",
        "vmware: skipped: no vcsim binary (set TALPROV_VCSIM, or run "
        "tests/emulators/vcsim/build.sh in a talprov checkout)",
    ]


def test_vcsim_is_found_by_env_or_in_a_checkout(tmp_path: Path) -> None:
    # This checkout (talprov is installed editable from it) once build.sh ran:
    assert demo_platforms.vcsim_binary({}) == (vcsim_binary().resolve(), "")
    binary = tmp_path / "tests" / "emulators" / "vcsim" / "bin" / "vcsim"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    # A bin/vcsim outside a checkout (no pyproject.toml) is not taken.
    assert demo_platforms.vcsim_binary({}, checkout=tmp_path)[0] is None
    (tmp_path / "pyproject.toml").write_text("")
    assert demo_platforms.vcsim_binary({}, checkout=tmp_path) == (binary, "")
    named = {demo_platforms.VCSIM_ENV: str(tmp_path / "elsewhere")}
    found, reason = demo_platforms.vcsim_binary(named, checkout=tmp_path)
    assert found is None
    assert reason == f"TALPROV_VCSIM names {tmp_path / 'elsewhere'}, which is not a file"


def test_keep_prints_one_export_line_with_the_config_and_the_aws_credentials(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QA: after `demo --keep`, following the README, `machine create` failed for
    want of AWS credentials: the demo printed them apart from the config's export.
    One line now exports everything the commands after it need."""
    from types import SimpleNamespace
    from typing import Any, cast

    from talprov.cli.demo import AwsDemo, _show_kept, kept_exports

    class KeptAws(AwsDemo):
        def __init__(self) -> None:  # no moto: only what _show_kept reads
            pass

        def keep_hint(self) -> str:
            return "moto (EC2)"

        def pid(self) -> int:
            return 4242

    factory = SimpleNamespace(keep_hint=lambda: "factory", pid=lambda: 4343)
    _show_kept(tmp_path, [KeptAws()], cast(Any, factory))
    printed = capsys.readouterr().err
    [line] = [li.strip() for li in printed.splitlines() if li.strip().startswith("export ")]
    exports = kept_exports(tmp_path, [KeptAws()])
    assert line == "export " + " ".join(f"{k}={v}" for k, v in exports.items())
    assert "AWS_ACCESS_KEY_ID=testing" in line
    assert f"TALPROV_CONFIG={tmp_path / 'talprov.yaml'}" in line
    assert "kill 4242 4343" in printed


def test_a_platform_named_twice_is_a_usage_error(tmp_path: Path) -> None:
    """QA: `--platforms aws,aws` ran the demo as if aws had been named once."""
    with pytest.raises(ValueError, match=r"^aws is named twice"):
        choose_platforms("aws,aws")
    with pytest.raises(ValueError, match=r"^aws is named twice"):
        choose_platforms("aws, proxmox ,aws")
    code, output = run_demo(tmp_path, "--platforms", "aws,aws")
    assert code == 2, output
    assert ("Error: Invalid value for '--platforms': aws is named twice; name each "
            "platform once") in output
    assert "starting" not in output  # nothing was started


@pytest.mark.parametrize("listed", ["", " , "])
def test_an_empty_platform_list_is_a_usage_error_naming_the_choices(listed: str) -> None:
    """QA: `--platforms ''` said "unknown (none given)": neither that the list was
    empty nor that leaving the option out picks the platforms."""
    from click.testing import CliRunner

    from talprov.cli import cli

    result = CliRunner().invoke(cli, ["demo", "--platforms", listed], prog_name="talprov")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Usage: talprov demo [OPTIONS]"), result.output
    assert ("Error: Invalid value for '--platforms': no platform given; name one or "
            "more of aws, proxmox, vmware, comma-separated, or leave --platforms out for "
            "aws plus every platform whose emulator is installed") in result.output
    assert "Traceback" not in result.output
    assert "starting" not in result.output

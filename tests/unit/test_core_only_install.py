"""Every command in a REAL core-only install (`pip install -e .`, no extras).

tests/unit/test_missing_extras.py refuses one extra's modules with an import hook;
this builds the venv a user gets from `pip install talprov` (scripts/core-venv.sh,
cached in .venv-core, rebuilt when pyproject.toml changes) and runs every command
there: --help of each, and each command that needs an extra once per platform.
No command may print a traceback; one that needs an extra exits 2 with ONE line
naming `pip install 'talprov[<extra>]'`. Issue 14, item 1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from talprov.cli import cli
from tests.helpers import REPO, WORKER_CONFIG
from tests.unit.test_missing_extras import BATCH, instance_for

PLATFORMS = ("aws", "proxmox", "vmware", "openstack", "baremetal")
SCHEMATIC = "customization: {extraKernelArgs: [console=ttyS0]}\n"


@pytest.fixture(scope="session")
def core_venv() -> Path:
    """The core-only venv, built once (about 20 s with pip's cache; then free)."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "core-venv.sh")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    venv = Path(proc.stdout.strip().splitlines()[-1])
    # The venv really is core-only: no extra's package is importable there.
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in "
         "('boto3', 'proxmoxer', 'pyVmomi', 'openstack', 'pyghmi', 'fastapi', 'moto', "
         "'grpc')))"],
        capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, f"{venv} holds an extra's package: {probe.stderr}"
    return venv


def every_help(group: click.Group, path: tuple[str, ...] = ()) -> list[list[str]]:
    """`--help` of the root and of every command and group under it."""
    commands = [[*path, "--help"]]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            commands += every_help(command, (*path, name))
        else:
            commands.append([*path, name, "--help"])
    return commands


def core_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TALPROV_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(root), XDG_STATE_HOME=str(root / "state"),
               XDG_CACHE_HOME=str(root / "xdgcache"), XDG_CONFIG_HOME=str(root / "xdgconfig"),
               TALPROV_CONFIG=str(root / "talprov.yaml"))
    return env


def write_config(root: Path, name: str, providers: dict[str, Any]) -> str:
    path = root / name
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{root / 'state.db'}",
                                    "cache_dir": str(root / "cache"), "providers": providers}))
    return str(path)


def write_request(root: Path, platform: str) -> str:
    path = root / f"req-{platform}.yaml"
    path.write_text(yaml.safe_dump({"id": f"r-{platform}", "provider": platform,
                                    "talos_version": "v1.13.9",
                                    "config": {"file": "worker.yaml"}}))
    return str(path)


def test_every_command_in_a_core_only_install(core_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "worker.yaml").write_text(WORKER_CONFIG)
    (tmp_path / "schematic.yaml").write_text(SCHEMATIC)
    write_config(tmp_path, "talprov.yaml", {})
    # Commands that work without any extra, or that need none: no traceback, a
    # documented exit code.
    plain = [*every_help(cli), ["--version"], ["providers"], ["providers", "--health"],
             ["config", "check"], ["machine", "list"], ["reconcile", "--once"],
             ["store", "status"], ["store", "upgrade", "--sql"], ["status", "--help"],
             ["image", "id", "-f", str(tmp_path / "schematic.yaml")]]
    # Commands that need an extra: one line naming it.
    needs: list[tuple[str, list[str]]] = [
        ("service", ["serve", "--listen", "127.0.0.1:0"]),
        ("demo", ["demo"]),
        ("autoscaler", ["autoscaler", "serve"]),
    ]
    # `config check` reports every part in a row of its own (exit 1 on any failure).
    reports: list[tuple[str, list[str]]] = []
    healths: list[tuple[str, list[str]]] = []
    for platform in PLATFORMS:
        config = write_config(tmp_path, f"{platform}.yaml",
                              {platform: instance_for(platform, tmp_path)})
        request = write_request(tmp_path, platform)
        needs += [(platform, ["--config", config, *args]) for args in (
            ["schema", platform],
            ["machine", "create", "-f", request], ["machine", "create", "-f", request, "--wait"],
        )]
        plain += [["--config", config, "machine", "list"],
                  ["--config", config, "reconcile", "--once"]]
        reports.append((platform, ["--config", config, "config", "check", "-o", "json"]))
        healths.append((platform, ["--config", config, "providers", "--health", "-o", "json"]))
    commands = (plain + [args for _, args in needs] + [args for _, args in reports]
                + [args for _, args in healths])

    proc = subprocess.run([str(core_venv / "bin" / "python"), str(BATCH), "", json.dumps(commands)],
                          env=core_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    for outcome in outcomes:
        assert "Traceback" not in outcome["stderr"] + outcome["stdout"], outcome
        assert outcome["code"] in (0, 1, 2), outcome
    for outcome in outcomes[:len(plain)]:
        if outcome["args"][-1] in ("--help", "--version"):
            assert outcome["code"] == 0, outcome
    for (extra, _), outcome in zip(needs, outcomes[len(plain):len(plain) + len(needs)],
                                   strict=True):
        lines = outcome["stderr"].strip().splitlines()
        assert outcome["code"] == 2, outcome
        assert len(lines) == 1, outcome
        assert f"pip install 'talprov[{extra}]'" in lines[0], outcome
    checked = len(plain) + len(needs)
    for (extra, _), outcome in zip(reports, outcomes[checked:checked + len(reports)],
                                   strict=True):
        assert outcome["code"] == 1, outcome
        [row] = [r for r in json.loads(outcome["stdout"]) if r["part"].startswith("providers.")]
        assert f"pip install 'talprov[{extra}]'" in row["result"], outcome

    # The console script itself, and `providers` naming every platform's extra.
    script = subprocess.run([str(core_venv / "bin" / "talprov"), "providers"],
                            env=core_env(tmp_path), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert script.returncode == 0, script.stderr
    for platform in PLATFORMS:
        [row] = [line for line in script.stdout.splitlines()
                 if line.split()[:3] == ["type", platform, platform]]
        assert f"not installed: pip install 'talprov[{platform}]'" in row
    # `providers --health` gives the instance its row (the pip command) and exits 1.
    for (extra, _), outcome in zip(healths, outcomes[checked + len(reports):], strict=True):
        assert outcome["code"] == 1, outcome
        [row] = [r for r in json.loads(outcome["stdout"]) if r["kind"] == "instance"]
        assert f"pip install 'talprov[{extra}]'" in row["detail"], outcome


def test_a_misplaced_setting_is_refused_without_the_extra(core_venv: Path,
                                                            tmp_path: Path) -> None:
    """QA: an openstack block with a misplaced key passed `talprov providers` in a
    core-only install and was refused only once the extra was installed. The
    settings model now loads without the SDK (the talprov.provider_configs entry
    points), so every platform's block is checked where its extra is missing."""
    commands = []
    for platform in PLATFORMS:
        block = {**(instance_for(platform, tmp_path) or {}), "not_a_setting": 1}
        config = write_config(tmp_path, f"{platform}.yaml", {platform: block})
        commands.append(["--config", config, "providers"])
    proc = subprocess.run([str(core_venv / "bin" / "python"), str(BATCH), "", json.dumps(commands)],
                          env=core_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    for platform, outcome in zip(PLATFORMS, json.loads(proc.stdout), strict=True):
        assert outcome["code"] == 2, outcome
        assert f"providers.{platform}.not_a_setting" in outcome["stderr"], outcome
        assert "Traceback" not in outcome["stderr"], outcome

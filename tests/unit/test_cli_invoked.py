"""The command lines talprov prints start as the user's shell can run them (QA C1).

After the README's quick start (`.venv/bin/talprov demo`) `talprov` is not on
PATH: the demo's "talprov status demo" and its clean-up line, pasted, gave
"bash: talprov: command not found" and cleaned nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

# Imported before tests/conftest.py's talprov_on_path patches the module: the real one.
from talprov.cli.invoked import talprov_command

SCRIPT = Path(sys.executable).parent / "talprov"


def _script(directory: Path) -> Path:
    directory.mkdir(parents=True)
    script = directory / "talprov"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


def test_talprov_when_the_path_finds_this_very_script(tmp_path: Path) -> None:
    script = _script(tmp_path / "bin")
    path = f"/nonexistent{os.pathsep}{script.parent}"
    assert talprov_command(str(script), path=path) == "talprov"


def test_the_scripts_absolute_path_when_the_path_finds_no_talprov(tmp_path: Path) -> None:
    script = _script(tmp_path / "my venv" / "bin")
    assert talprov_command(str(script), path="/nonexistent") == shlex.quote(str(script))
    assert talprov_command(str(script), path="/nonexistent").startswith("'/")


def test_the_scripts_path_when_the_path_finds_another_talprov(tmp_path: Path) -> None:
    ours = _script(tmp_path / "venv" / "bin")
    other = _script(tmp_path / "elsewhere")
    assert talprov_command(str(ours), path=str(other.parent)) == str(ours)


def test_a_relative_script_is_made_absolute(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo's clean-up line changes directory first: `.venv/bin/talprov` would break.
    _script(tmp_path / ".venv" / "bin")
    monkeypatch.chdir(tmp_path)
    assert talprov_command(".venv/bin/talprov", path="/nonexistent") == str(
        tmp_path / ".venv" / "bin" / "talprov")


def _store_status(path: str, tmp_path: Path) -> str:
    """What the installed script says for a store file that does not exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALPROV_")}
    env.update(PATH=path, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path),
               TALPROV_STORE=f"sqlite:///{tmp_path}/missing.db")
    done = subprocess.run([str(SCRIPT), "store", "status"], env=env, capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_printed_advice_names_the_script_off_the_path(tmp_path: Path) -> None:
    said = _store_status("/usr/bin:/bin", tmp_path)
    assert f"`{shlex.quote(str(SCRIPT.resolve()))} store upgrade` creates it" in said


def test_printed_advice_says_talprov_on_the_path(tmp_path: Path) -> None:
    said = _store_status(f"{SCRIPT.parent}{os.pathsep}/usr/bin:/bin", tmp_path)
    assert "`talprov store upgrade` creates it" in said



#: Strings of talprov/cli that name a talprov command but are no line to run.
NOT_TO_RUN = {"talprov serve: reconcile worker", "talprov serve",
              "# written by `talprov demo`; it may overwrite this file\n"}


#: "talprov" then one of its commands, as a line to run starts.
COMMAND_LINE = re.compile(r"(^|[`\s;])talprov (plan|apply|status|scale|destroy|machine|set|"
                          r"config|serve|reconcile|demo|store|baremetal|image|providers|"
                          r"schema|autoscaler)\b")


def printed_command_lines() -> list[str]:
    """Literal text of talprov/cli that reads as a talprov command line to run
    (`talprov machine ...`), outside docstrings and --help texts."""
    import ast

    found = []
    for path in sorted((Path(__file__).resolve().parents[2] / "talprov" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        skip = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                and isinstance(node.body[0], ast.Expr)}
        skip |= {id(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                 for k in node.keywords if k.arg == "help"}
        skip |= {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id.endswith("_HELP") for t in node.targets)
                 for inner in ast.walk(node.value)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in skip and node.value not in NOT_TO_RUN
                    and COMMAND_LINE.search(node.value)):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return found


def test_every_command_line_printed_to_run_goes_through_talprov_line() -> None:
    assert printed_command_lines() == []

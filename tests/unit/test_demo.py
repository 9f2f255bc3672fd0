"""`talprov demo`, as README's quick start runs it: a real process, no AWS account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_provisions_checks_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "talprov", "demo", "--dir", str(workdir), "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "demo: control-planes 3/3  workers 2/2" in output
    assert output.count("matches config") == 5
    assert output.count("required") >= 5
    assert "all demo instances terminated." in output
    assert "Traceback" not in output

"""schemathesis against /openapi.json of a real ``talprov serve``: no 5xx anywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SEEN_OUTPUT, Home
from tests.unit.service.conftest import TOKENS, WRITE_TOKEN
from tests.unit.service.serving import ServeProcess

# Bounded so the run stays well under a minute on a shared 2-core machine.
MAX_EXAMPLES = 12
MAX_SECONDS = 25


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(home: Home) -> None:
    st = Path(sys.executable).parent / "schemathesis"
    if not st.exists() and shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.2})
    server = ServeProcess(home.env(), home.root)
    try:
        result = subprocess.run(
            [str(st) if st.exists() else "schemathesis", "run", f"{server.url}/openapi.json",
             "--checks", "not_a_server_error",
             "--header", f"Authorization: Bearer {WRITE_TOKEN}",
             "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS),
             "--seed", "20261127",
             # One worker: hypothesis parses lambda sources with ast, which is not
             # thread-safe on Python 3.11 ("AST constructor recursion depth mismatch").
             "--workers", "1", "--request-timeout", "10",
             "--generation-database", "none", "--no-color"],
            check=False, capture_output=True, text=True, timeout=MAX_SECONDS + 60,
            cwd=home.root,
            env={**home.env(), "SCHEMATHESIS_TELEMETRY": "false"},
        )
    finally:
        assert server.terminate() == 0, server.output()
    output = result.stdout + result.stderr
    SEEN_OUTPUT.append(output)
    assert result.returncode == 0, output[-4000:]
    assert "Server error" not in output
    assert "internal error" not in server.output()

"""The help names the environment variables, and shell completion works as documented."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from talprov.cli import cli
from tests.helpers import REPO


def test_global_options_name_their_environment_variables() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    for variable in ("TALPROV_CONFIG", "TALPROV_STORE", "TALPROV_LOG_FORMAT"):
        assert variable in text


def test_bash_completion_as_the_readme_shows_it() -> None:
    readme = (REPO / "README.md").read_text()
    assert '_TALPROV_COMPLETE=bash_source talprov' in readme
    env = {**os.environ, "_TALPROV_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "talprov"], env=env, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert "_TALPROV_COMPLETE=bash_complete" in script
    env = {**os.environ, "_TALPROV_COMPLETE": "bash_complete", "COMP_WORDS": "talprov mach",
           "COMP_CWORD": "1"}
    words = subprocess.run([sys.executable, "-m", "talprov"], env=env, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "machine" in words

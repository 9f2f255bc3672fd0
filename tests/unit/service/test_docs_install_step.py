"""docs/service.md's curl examples start from the demo, whose quick start installs
only the `demo` extra: `talprov serve` then stops at the missing `service` extra.
QA: the section did not say to install it (this failed before)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_curl_section_says_to_install_the_service_extra_before_its_first_block() -> None:
    text = (REPO / "docs" / "service.md").read_text()
    section = text[text.index("## Examples with curl"):]
    before_first_block = section[:section.index("```sh runnable")]
    assert "'talprov[demo,service]'" in before_first_block
    assert "'.[demo,service]'" in before_first_block
    # The extras named are the project's own.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"demo", "service"} <= set(extras["optional-dependencies"])
    readme = (REPO / "README.md").read_text()
    assert "pip install -e '.[demo]'" in readme  # what the quick start installs

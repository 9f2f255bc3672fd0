"""docs/security.md names, for each promise, the tests that show it: every one of them
must exist, so a renamed or deleted test cannot leave a promise unbacked."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[^`:]+\.py)(?:::(\w+))?`|`::(\w+)`")


def _function_names(path: Path) -> set[str]:
    """Tests and fixtures (``tests/conftest.py::canary_watch``) defined in ``path``."""
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _references() -> list[tuple[str, str | None]]:
    """(file, test or None) for every test the promise tables name; ``::name`` after a
    file in the same table row means a test of that file."""
    found: list[tuple[str, str | None]] = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        current: str | None = None
        for match in NAMED.finditer(line):
            if match[1]:
                current = match[1]
                found.append((current, match[2]))
            else:
                assert current is not None, f"'::{match[3]}' names no file: {line}"
                found.append((current, match[3]))
    return found


def test_every_test_the_security_page_names_exists() -> None:
    references = _references()
    assert len(references) >= 30
    for file, name in references:
        path = ROOT / file
        assert path.is_file(), file
        if name is not None:
            assert name in _function_names(path), f"{file}::{name}"


def test_every_promise_names_a_test() -> None:
    rows = [line for line in (ROOT / "docs" / "security.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| promise", "|---"))]
    assert rows
    for row in rows:
        assert "`tests/" in row, row

"""The demo's table on an 80-column terminal (QA: it was drawn wider than the
terminal, so its last cells were cut at the edge)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

import talprov.cli.output as output_module
from talprov.cli.demo import show_results

#: Rows as each platform's verify() makes them (Row.as_dict), with the longest
#: values the demo shows: full request ids, EC2 instance ids, checks that passed.
ROWS: list[dict[str, Any]] = [
    {"platform": "aws", "request": "demo-control-planes-k3x9a", "set": "control-planes",
     "stage": "provisioned", "machine": "i-0123456789abcdef0", "where": "eu-west-1a",
     "address": "10.123.234.201", "state": "running", "config": "matches config",
     "check": "imds required", "ok": True},
    {"platform": "proxmox", "request": "demo-proxmox-workers-q81zt", "set": "proxmox-workers",
     "stage": "provisioned", "machine": "100", "where": "pve1", "address": None,
     "state": "running", "config": "seed ISO attached (369472 B)",
     "check": "smbios uuid, boot ISO", "ok": True},
    {"platform": "vmware", "request": "demo-vmware-workers-0pz7c", "set": "vmware-workers",
     "stage": "failed", "machine": "vm-57", "where": "DC0_H0", "address": "192.168.100.200",
     "state": "poweredOn", "config": "MISMATCH", "check": "disk.enableUUID", "ok": False},
]


def shown(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          columns: int, terminal: bool = True, env_columns: str | None = None) -> str:
    monkeypatch.setattr(output_module, "stdout_is_terminal", lambda: terminal)
    if env_columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", env_columns)
    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((columns, 24)))
    show_results(ROWS)
    return capsys.readouterr().out


def test_the_table_fits_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = shown(monkeypatch, capsys, 80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for row in ROWS:  # ids whole, and what each check found
        assert str(row["request"]) in text
        assert str(row["machine"]) in text
    assert "MISMATCH" in text
    assert "imds required" in " ".join(text.split())


def test_a_wide_terminal_or_a_pipe_gets_every_column(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for text in (shown(monkeypatch, capsys, 200), shown(monkeypatch, capsys, 80, False)):
        header = text.splitlines()[1].split()
        assert header == ["platform", "request", "set", "stage", "machine", "where",
                          "address", "state", "config", "check"], text


def test_a_pipe_honours_columns(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """QA: `COLUMNS=80 talprov demo | cat` drew the 200-column table; COLUMNS is
    the width asked for, terminal or not, as for every other table."""
    for width in (80, 100):
        text = shown(monkeypatch, capsys, 200, terminal=False, env_columns=str(width))
        assert max(len(line) for line in text.splitlines()) <= width, text
        assert "imds required" in " ".join(text.split())
    # Not a number: ignored, as if unset.
    text = shown(monkeypatch, capsys, 80, terminal=False, env_columns="wide")
    assert text.splitlines()[1].split()[-1] == "check", text
    rows = [{"id": "a-request-id", "error": "word " * 60}]
    monkeypatch.setenv("COLUMNS", "60")
    output_module.emit(rows, "table", columns=("id", "error"))
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 60

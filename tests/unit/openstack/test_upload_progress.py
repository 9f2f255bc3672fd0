"""An image upload's progress says 100% once.

QA before: ``machine create`` of an OpenStack request printed the upload's
"100%" line twice: the reader reported the end again when the SDK's last read
found nothing more, and the printer printed any report of the total.
"""

from __future__ import annotations

import io

import pytest

from talprov.cli.app import progress_printer
from talprov.openstack.images import ProgressReader


def test_the_reader_reports_the_end_once() -> None:
    reports: list[int] = []
    reader = ProgressReader(io.BytesIO(b"x" * 10), 10, "upload img",
                            lambda _task, done, _total: reports.append(done))
    while reader.read(4):
        pass
    assert reports == [4, 8, 10]


def test_the_printer_says_each_state_once(capsys: pytest.CaptureFixture[str]) -> None:
    show = progress_printer()
    for done in (0, 10, 10):
        show("upload img", done, 10)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["upload img: 0% (0/10 bytes)", "upload img: 100% (10/10 bytes)"]

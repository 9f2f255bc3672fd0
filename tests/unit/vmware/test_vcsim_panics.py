"""A vcsim request handler that panicked is found in the simulator's log (the
``vcsim`` fixture fails the test with those lines at teardown).

Go's net/http recovers the panic, logs it and closes the connection without an
answer; the client only sees "vCenter unreachable (connection failed)", which is
how a CI run once failed with nothing left to say why.
"""

from __future__ import annotations

from pathlib import Path

from tests.emulators.vcsim.fixture import handler_panics

PANIC = ("2026/12/07 06:50:44 http: panic serving 127.0.0.1:38708: "
         "runtime error: index out of range [0] with length 0")


def test_a_handler_panic_is_found_among_other_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "vcsim.log"
    log.write_text("vcsim listening on https://127.0.0.1:1/sdk\n"
                   "2026/12/07 06:50:44 http: TLS handshake error from 127.0.0.1:1: EOF\n"
                   f"{PANIC}\ngoroutine 7 [running]:\n")
    assert handler_panics(log) == [PANIC]


def test_a_log_without_panics_or_without_a_file_has_none(tmp_path: Path) -> None:
    log = tmp_path / "vcsim.log"
    assert handler_panics(log) == []
    log.write_text("vcsim listening on https://127.0.0.1:1/sdk\n")
    assert handler_panics(log) == []

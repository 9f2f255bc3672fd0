"""Log set-up shared by the CLI and the service: plain or JSON lines, secrets masked.

What a line is about (request id, provider instance, step) travels in a
context variable set with :func:`log_context` around the work, so every line
logged inside, by talprov or by an SDK, carries it; ``extra={"request_id": ...}``
on one call does the same for that line. Context variables do not cross into
worker threads by themselves: code that hands work to a pool sets the context
again inside the worker (the step runner does).

The JSON format writes one object per line with ``time``, ``level``,
``logger``, ``message`` and, where known, ``request_id``, ``provider`` and
``step`` (and ``exception`` for a traceback), for Loki or Elasticsearch. Both
formats pass every line through :func:`talprov.secrets.redact`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TextIO

from talprov.secrets import redact

FORMATS = ("plain", "json")
#: The context fields a line may carry, in the order the JSON object lists them.
CONTEXT_FIELDS = ("request_id", "provider", "step")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_NOTHING: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("talprov_log_context", default=_NOTHING)


def tls_off_warning(subject: str, setting: str) -> str:
    """The one warning for an endpoint whose TLS certificate is not checked:
    ``subject`` names it (``provider instance px-lab``, a BMC, the Image Factory),
    ``setting`` is what turned verification off, as written (``insecure: true``).
    Every layer says it when a command first uses such an endpoint. Pure."""
    return (f"{subject}: TLS verification is off ({setting}): its endpoint's certificate "
            "is not checked, so whoever answers at its address gets its credentials and "
            "is believed")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (see :data:`CONTEXT_FIELDS`; ``None`` values are skipped) to
    every line logged in this context until the block ends. Nests."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    added = {key: value for key, value in fields.items() if value is not None}
    token = _context.set({**_context.get(), **added})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields :func:`log_context` set here (a copy)."""
    return dict(_context.get())


def record_time(record: logging.LogRecord) -> str:
    """When ``record`` was made, as RFC 3339 in UTC with ``Z`` and milliseconds: the
    one time format of the CLI, the API and both log formats."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; message and traceback redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": record_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        context = _context.get()
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None) or context.get(key)
            if value:
                line[key] = redact(str(value))
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class RedactingPlainFormatter(logging.Formatter):
    """The plain format, with the whole line (traceback included) redacted."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return record_time(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def make_handler(log_format: str, name: str, *,
                 kind: type[logging.StreamHandler[TextIO]] = logging.StreamHandler
                 ) -> logging.Handler:
    """A stderr handler named ``name`` writing ``log_format`` (``plain`` or ``json``),
    of class ``kind`` (a StreamHandler). Raises ValueError for another format."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = kind()
    formatter = JsonFormatter() if log_format == "json" else RedactingPlainFormatter(PLAIN_FORMAT)
    handler.setFormatter(formatter)
    handler.set_name(name)
    return handler


def install_handler(handler: logging.Handler) -> None:
    """Put ``handler`` on the root logger in place of one with the same name, so that
    embedding code (and tests) keep their own handlers. Idempotent."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != handler.get_name()]
    root.addHandler(handler)


#: A line of Abseil's log format, which gRPC's C core writes straight to file
#: descriptor 2: ``I1206 06:07:00.514485   26486 ssl_transport_security.cc:2563] text``.
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\] ?(.*)$")
_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR,
                  "F": logging.CRITICAL}
#: Native lines an operator must see at the default level whatever level the
#: library gave them: a refused TLS handshake is a client with the wrong certificate.
_NATIVE_WARNINGS = ("Handshake failed",)


def native_line_record(logger_name: str, line: str) -> logging.LogRecord:
    """The log record for one line native code wrote to stderr: Abseil's level and
    ``file:line`` kept (the latter at the end of the message), other lines at
    WARNING. Pure."""
    level, message = logging.WARNING, line
    match = _NATIVE_LINE.match(line)
    if match is not None:
        level = _NATIVE_LEVELS[match[1]]
        message = f"{match[3]} ({match[2]})"
    if any(text in message for text in _NATIVE_WARNINGS):
        level = max(level, logging.WARNING)
    return logging.LogRecord(logger_name, level, __file__, 0, message, None, None)


@contextmanager
def native_stderr_logged(logger_name: str) -> Iterator[None]:
    """While the block runs, what native code (gRPC's C core) writes to file
    descriptor 2 goes through ``logging.getLogger(logger_name)`` line by line, so
    it gets talprov's format (plain or JSON), level and redaction instead of
    bypassing them. Python's own stderr (``sys.stderr`` and the root logger's
    handlers on it) keeps writing to the real stderr. Restores everything on exit.
    """
    sys.stderr.flush()
    saved_fd = os.dup(2)
    real_stderr = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding="utf-8",
                            errors="backslashreplace")
    previous = sys.stderr
    moved = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and h.stream is previous]
    read_fd, write_fd = os.pipe()
    logger = logging.getLogger(logger_name)

    def forward() -> None:
        with os.fdopen(read_fd, encoding="utf-8", errors="backslashreplace") as lines:
            for line in lines:
                if line.strip():
                    record = native_line_record(logger_name, line.rstrip("\n"))
                    if logger.isEnabledFor(record.levelno):
                        logger.handle(record)

    # Python's writers first, so that nothing of ours can loop back into the pipe.
    sys.stderr = real_stderr
    for handler in moved:
        handler.setStream(real_stderr)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    reader = threading.Thread(target=forward, name="native-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        os.dup2(saved_fd, 2)  # closes the pipe's last write end: the reader ends
        os.close(saved_fd)
        reader.join(5)
        sys.stderr = previous
        for handler in moved:
            handler.setStream(previous)
        real_stderr.close()

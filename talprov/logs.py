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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

from talprov.secrets import redact

FORMATS = ("plain", "json")
#: The context fields a line may carry, in the order the JSON object lists them.
CONTEXT_FIELDS = ("request_id", "provider", "step")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_NOTHING: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("talprov_log_context", default=_NOTHING)


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


def make_handler(log_format: str, name: str) -> logging.Handler:
    """A stderr handler named ``name`` writing ``log_format`` (``plain`` or ``json``).
    Raises ValueError for another format."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
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

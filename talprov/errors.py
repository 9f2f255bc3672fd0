"""Errors in what people give talprov: config, request and spec files, API bodies.

These are not provider errors (see :mod:`talprov.providers.errors`): they are
raised before any cloud is asked anything, and the CLI turns them into exit 2
with one line naming the file and field, the API into 422.
"""

from __future__ import annotations

from pydantic import ValidationError


class Conflict(Exception):
    """A request id is already used by a request with a different body."""


class ConfigError(Exception):
    """Invalid user input: a config, request or spec file. ``where`` names file and field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def validation_message(exc: ValidationError, prefix: str, sep: str = ".") -> tuple[str, str]:
    """The first problem of a pydantic error as (``prefix`` + field path, message)."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    where = f"{prefix}{sep}{path}" if path else prefix
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    return where, message


class MissingExtra(ConfigError):
    """A provider type (or the service) needs an optional extra that is not installed;
    the message carries the pip command."""

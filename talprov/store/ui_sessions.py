"""Status-page sessions in the store: opened at sign-in, read on every page, ended by
sign-out or expiry.

Only the SHA-256 of a session id is stored (:data:`~talprov.store.schema.ui_sessions`);
the id itself lives in the browser's cookie. Any replica sharing the store knows a
session another opened, and a sign-out on one ends it on all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from talprov.store.parts import StorePart
from talprov.store.records import utc_or_now
from talprov.store.schema import ui_sessions


@dataclass(frozen=True)
class UiSession:
    """Who a live session belongs to: the token's name and its value's check digest."""

    token_name: str
    token_check: str
    expires_at: datetime


class UiSessionMethods(StorePart):
    """The session half of :class:`talprov.store.Store`, which mixes it in."""

    def open_ui_session(self, id_sha256: str, *, token_name: str, token_check: str,
                        expires_at: datetime, now: datetime | None = None) -> None:
        """Record a new session (by the digest of its id) and drop expired ones.
        Raises ``StoreError``; a second open of one digest is an integrity error
        (ids are random: it does not happen)."""
        moment = utc_or_now(now)
        with self._write() as conn:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at <= moment))
            conn.execute(ui_sessions.insert().values(
                id_sha256=id_sha256, token_name=token_name, token_check=token_check,
                created_at=moment, expires_at=expires_at))

    def ui_session(self, id_sha256: str, *, now: datetime | None = None) -> UiSession | None:
        """The live session with this id digest, or None (unknown, ended or expired).
        Read-only."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(ui_sessions.c.token_name, ui_sessions.c.token_check,
                          ui_sessions.c.expires_at)
                .where(ui_sessions.c.id_sha256 == id_sha256,
                       ui_sessions.c.expires_at > utc_or_now(now))
            ).first()
        return None if row is None else UiSession(row.token_name, row.token_check,
                                                  row.expires_at)

    def end_ui_session(self, id_sha256: str) -> None:
        """Remove the session; idempotent (an unknown digest is not an error)."""
        with self._write() as conn:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.id_sha256 == id_sha256))

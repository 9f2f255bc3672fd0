"""Errors raised by the state store.

Messages name request ids, versions and URLs without passwords; they never carry
machine configurations, join URLs or key material.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StaleRecord(StoreError):
    """The row changed (or vanished) since the caller read it.

    Raised by optimistic writes: another worker, or a delete, got there first.
    The caller should re-read the request and decide again.
    """


class StoreKeyError(StoreError):
    """Encrypted data cannot be read: ``TALPROV_STORE_KEY`` is missing or wrong."""


class UnsupportedStore(StoreError):
    """The store URL is not one talprov can use (not a URL, or not SQLite or
    PostgreSQL): invalid input, which no retry or restart changes."""


class StoreFull(StoreError):
    """The store's disk (or SQLite's page limit) is full: writes fail until space is
    freed; reads still work."""

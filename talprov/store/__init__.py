"""State persistence: SQLite by default, any SQLAlchemy URL (PostgreSQL for replicas)."""

from talprov.store.errors import StaleRecord, StoreError, StoreKeyError
from talprov.store.location import default_store_url
from talprov.store.records import AuditEntry, Event, RequestRecord, RequestSetRecord
from talprov.store.store import Store

__all__ = [
    "AuditEntry",
    "Event",
    "RequestRecord",
    "RequestSetRecord",
    "StaleRecord",
    "Store",
    "StoreError",
    "StoreKeyError",
    "default_store_url",
]

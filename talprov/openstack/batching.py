"""Running a step for every request of a pass side by side, one ProviderError each
(the contract's :mod:`talprov.providers.batching`, under the names this driver uses)."""

from __future__ import annotations

from talprov.providers.batching import BATCH_WORKERS, one_by_one
from talprov.providers.batching import side_by_side as each

__all__ = ["BATCH_WORKERS", "each", "one_by_one"]

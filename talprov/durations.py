"""The type of every setting that is a number of seconds: a timeout, an
interval, a cache's lifetime.

Such a number ends in ``time.sleep``, ``Event.wait``, a socket timeout or
``now + timedelta(seconds=...)``, and each of those raises ``OverflowError``
long before a float runs out: ``poll_interval: 1e308`` passed ``config check``
and broke the first wait (QA). So every such setting is at most
:data:`MAX_SECONDS` (a year, longer than any wait talprov means), unless its
own documented bound is lower; a larger value is refused at load, naming the
setting and the bound. ``tests/unit/test_config_seconds.py`` walks every model
for a seconds setting without such a bound.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: The most seconds any setting may say: a year (365 days), 31,536,000.
MAX_SECONDS = 365 * 24 * 3600

#: A number of seconds; the field's own ``Field(gt=..., ge=...)`` adds the low bound.
Seconds = Annotated[float, Field(le=MAX_SECONDS)]
#: A whole number of seconds (a DHCP lease time).
WholeSeconds = Annotated[int, Field(le=MAX_SECONDS)]

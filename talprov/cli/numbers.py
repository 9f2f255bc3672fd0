"""The numbers options take -- seconds (``--timeout``, ``--interval``, ``--watch``)
and sizes (``baremetal add --cpus``) -- checked when the command line is read.

click's FLOAT takes ``inf`` and ``nan``, and its FloatRange lets ``nan`` through
(no comparison with nan is true): ``--watch inf`` ended in time.sleep's
OverflowError, ``reconcile --interval nan`` ran rounds without a pause (QA).
Here a value out of range is click's usage error (exit 2, as every other bad
option), naming the option and the range. Where a config setting means the same
(``service.reconcile_interval``, a request's ``min_cpus``), its bounds are the
option's.
"""

from __future__ import annotations

import math
from typing import Any

import click

#: The longest ``--timeout`` of a wait: a week. Longer is no wait but a service
#: (``talprov reconcile``), and a timer takes no infinity.
MAX_WAIT_SECONDS = 7 * 24 * 3600
#: The longest pause of ``--watch`` between two redraws: a day.
MAX_WATCH_SECONDS = 24 * 3600
#: ``reconcile --interval``'s bounds: those of the config's
#: ``service.reconcile_interval`` (talprov.service.config), which serve's worker uses.
MAX_RECONCILE_INTERVAL = 300.0


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A finite number of seconds more than ``low`` (from ``low`` on, with
    ``low_included``) and at most ``high``."""

    name = "seconds"

    def __init__(self, low: float, high: float, *, low_included: bool = False) -> None:
        self.low = low
        self.high = high
        self.low_included = low_included

    def range_text(self) -> str:
        """The range in words, as the usage error and the help say it."""
        if self.low_included:
            return f"from {self.low:g} to {self.high:g}"
        return f"more than {self.low:g} and at most {self.high:g}"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        above_low = seconds >= self.low if self.low_included else seconds > self.low
        # nan and inf fail one of the comparisons; isfinite says so for the reader.
        if not (math.isfinite(seconds) and above_low and seconds <= self.high):
            self.fail(f"expected seconds, {self.range_text()}; got {str(value)!r}", param, ctx)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS"


class Whole(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A whole number from ``low`` to ``high`` (both included)."""

    name = "integer"

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = self.low - 1
        if not self.low <= number <= self.high:
            self.fail(f"expected a whole number from {self.low} to {self.high}; "
                      f"got {str(value)!r}", param, ctx)
        return number


#: ``--timeout`` of every wait (``--wait``, ``demo``): 0 would give up at once.
WAIT_SECONDS = Seconds(0, MAX_WAIT_SECONDS)
#: ``--watch``: half a second between redraws at the least, as ever.
WATCH_SECONDS = Seconds(0.5, MAX_WATCH_SECONDS, low_included=True)
#: ``reconcile --interval``: 0 would run rounds without a pause.
RECONCILE_INTERVAL = Seconds(0, MAX_RECONCILE_INTERVAL)


# ``baremetal add``'s sizes of a machine, which a request's min_cpus,
# min_memory_mib and min_disk_gb (1 and more) are matched against. The highest
# are far above any machine's, and below SQLite's INTEGER, whose overflow was a
# traceback.
#: ``--cpus``: logical CPUs.
MACHINE_CPUS = Whole(1, 65536)
#: ``--memory-mib``: up to 4 PiB.
MACHINE_MEMORY_MIB = Whole(1, 2**32)
#: ``--disk-gb``: up to an exabyte.
MACHINE_DISK_GB = Whole(1, 10**9)

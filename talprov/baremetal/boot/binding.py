"""Who may receive a machine's install token and its config.

PXE has no caller identity: anyone on the provisioning segment who knows a
machine's MAC (it is on every frame) or SMBIOS UUID can ask for its boot script.
Two facts narrow who that can be:

- the DHCP exchange: a machine that PXE-boots does DHCP first (firmware, then
  iPXE again). When this boot server's DHCP responder runs, an install token is
  only handed out if one of the machine's MACs did such an exchange recently,
  and, when the responder leased the address itself (full mode), only to that
  address;
- the source address: the config is only given to the address that fetched
  the boot script carrying its token (``Inventory.take_config``).

:class:`DhcpLedger` is what the responder remembers; :class:`BootAlerts` counts
and logs what looks like theft (a token used twice, or from elsewhere).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

log = logging.getLogger(__name__)

#: How long a DHCP exchange vouches for the boot-script fetch that follows it.
DHCP_VOUCH_SECONDS = 300.0


@dataclass(frozen=True)
class Exchange:
    at: float
    #: The address this responder leased, or ``None`` in proxy mode (it leases none).
    address: IPv4Address | None


class DhcpLedger:
    """The last DHCP exchange of each MAC this responder answered. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window: float = DHCP_VOUCH_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._seen: dict[str, Exchange] = {}

    def record(self, mac: str, address: IPv4Address | None) -> None:
        with self._lock:
            self._seen[mac.lower()] = Exchange(self._clock(), address)

    def vouches_for(self, macs: Iterable[str], remote: str) -> bool:
        """Whether one of ``macs`` did DHCP here recently, from ``remote`` when the
        responder leased the address."""
        now = self._clock()
        with self._lock:
            for mac in macs:
                seen = self._seen.get(mac.lower())
                if seen is None or now - seen.at > self._window:
                    continue
                if seen.address is None or str(seen.address) == remote:
                    return True
        return False


#: The alert kinds (audit events) that may mean a stolen or replayed token.
ALERT_KINDS = ("config-refetch", "config-wrong-address", "script-without-dhcp")


class BootAlerts:
    """Counts of suspicious boot-server events, by kind; each is also logged.

    Kinds: ``config-refetch`` (a used token presented again),
    ``config-wrong-address`` (a live token from another address than the script's),
    ``script-without-dhcp`` (an install script asked for without a matching DHCP
    exchange). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def raise_alert(self, kind: str, machine: str | None, remote: str, detail: str) -> None:
        with self._lock:
            self.counts[kind] += 1
        log.warning("boot server alert %s: machine %s, from %s: %s", kind, machine or "?",
                    remote, detail)


class SourceRateLimit:
    """At most ``per_minute()`` requests from one source address in any 60 seconds.

    The boot server has no caller identity, and most of its answers write an
    audit entry: without a limit one host could grow the inventory file without
    bound. Thread-safe; addresses quiet for a minute are forgotten.
    """

    def __init__(self, per_minute: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def allow(self, remote: str) -> bool:
        """Whether ``remote`` may have one more request now (and count it if so)."""
        now = self._clock()
        with self._lock:
            if len(self._seen) > 4096:  # forget addresses that went quiet
                self._seen = {k: v for k, v in self._seen.items() if now - v[-1] < 60}
            window = self._seen.setdefault(remote, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self._per_minute():
                return False
            window.append(now)
            return True

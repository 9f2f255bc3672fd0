"""IPMI over LAN (RMCP+) power control, on pyghmi.

pyghmi keeps one session per BMC and user inside the process; a command that
gets no answer is retried by pyghmi itself for a few seconds, so the retries
here are few (``attempts``) and only for errors that may pass.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from talprov.baremetal.errors import ipmi_error
from talprov.baremetal.power.base import (
    BootDevice,
    NoAnswer,
    PowerState,
    StillBlocked,
    Throttle,
    bounded_call,
)
from talprov.providers.errors import AuthError, ProviderError, Transient, naming_endpoint

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 623
def drop_failed_login(address: str, port: int, username: str, password: str) -> None:
    """Forget pyghmi's session to this BMC and user if it never finished logging in.

    pyghmi files a session that is logging in under the credentials as given (str)
    and removes it under their encoded form (bytes), so a login that failed (its
    datagrams lost) stays filed, and pyghmi hands that dead session to every later
    ``Command`` for the BMC: each call then fails with "Session no longer connected"
    until the process ends, however healthy the network is again. A session that
    is logged in is left alone. Idempotent.
    """
    from pyghmi.ipmi.private import session as pyghmi_session

    pending = pyghmi_session.Session.initting_sessions
    key = (address, username, password, port, None)  # pyghmi's key: kg is None
    stale = pending.get(key)
    if stale is not None and not getattr(stale, "logged", 0):
        pending.pop(key, None)


class IpmiPower:
    """One machine's BMC over IPMI LAN. Thread-safe; calls are spaced by ``min_interval``.

    One pyghmi ``Command`` (one RMCP+ session) per BMC and user is kept for the
    whole process: a second ``Command`` for a BMC whose session pyghmi already
    holds never completes its login (seen with ipmi_sim), and BMCs limit
    sessions anyway. Each call runs in a daemon thread bounded by
    ``call_timeout`` (:func:`bounded_call`), so a BMC that stops answering can
    hang neither a step nor the process's exit; while a call given up on is
    still blocked, later calls to that BMC fail at once with ``Transient``
    instead of starting another thread.
    """

    _sessions: ClassVar[dict[str, Any]] = {}
    _sessions_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, address: str, username: str, password: str, *, port: int | None = None,
        min_interval: float = 0.5, attempts: int = 2, call_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.address = address
        self.port = port or DEFAULT_PORT
        self._username = username
        self._password = password
        self.attempts = max(1, attempts)
        self.call_timeout = call_timeout
        self._sleep = sleep
        self._throttle = Throttle.for_bmc(f"ipmi://{address}:{self.port}", min_interval)
        digest = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        self._key = f"{address}:{self.port}:{digest}"

    def __repr__(self) -> str:
        return f"IpmiPower({self.address}:{self.port})"

    @property
    def endpoint(self) -> str:
        """The BMC, as errors name it."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"ipmi://{host}:{self.port}"

    def _command(self) -> Any:
        from pyghmi.ipmi import command

        with self._sessions_lock:
            found = self._sessions.get(self._key)
        if found is None:
            found = command.Command(bmc=self.address, userid=self._username,
                                    password=self._password, port=self.port)
            with self._sessions_lock:
                self._sessions[self._key] = found
        return found

    def _forget_session(self) -> None:
        with self._sessions_lock:
            self._sessions.pop(self._key, None)
        drop_failed_login(self.address, self.port, self._username, self._password)

    def _call(self, what: str, action: Callable[[Any], T]) -> T:
        from pyghmi import exceptions as pyghmi_errors

        last: ProviderError | None = None
        for attempt in range(self.attempts):
            self._throttle.wait()
            try:
                return bounded_call(lambda: action(self._command()), self.call_timeout,
                                    name=f"ipmi {what} {self.address}:{self.port}",
                                    key=self.endpoint)
            except StillBlocked:
                # A call given up on (this one's first attempt, or an earlier step's)
                # is still blocked in pyghmi: no second thread for the same BMC.
                raise last or Transient(
                    f"{what}: BMC {self.endpoint} still has not answered the previous "
                    f"call (given up on after {self.call_timeout:.0f}s); no new call is "
                    "made until it does", retry_after=30.0) from None
            except NoAnswer:
                last = Transient(f"{naming_endpoint(what, self.endpoint)}: no answer within "
                                 f"{self.call_timeout:.0f}s", retry_after=10.0)
                self._forget_session()
            except (pyghmi_errors.PyghmiException, OSError) as exc:
                last = ipmi_error(exc, what, endpoint=self.endpoint)
                self._forget_session()
            if isinstance(last, AuthError):
                raise last
            log.info("IPMI %s on %s failed (attempt %d): %s", what, self.address,
                     attempt + 1, last)
            if attempt + 1 < self.attempts:
                self._sleep(min(2.0 ** attempt, 5.0))
        assert last is not None
        raise last

    def power_state(self) -> PowerState:
        """The chassis power state. Raises ``AuthError`` / ``Transient``. Read-only."""
        reply = self._call("get power", lambda c: c.get_power())
        state = str(reply.get("powerstate", "")).lower()
        return PowerState(state) if state in ("on", "off") else PowerState.UNKNOWN

    def power_on(self) -> None:
        """Chassis power on. Idempotent. Raises ``AuthError`` / ``Transient``."""
        self._call("power on", lambda c: c.set_power("on", wait=False))

    def power_off(self) -> None:
        """Chassis power off (hard). Idempotent. Raises ``AuthError`` / ``Transient``."""
        self._call("power off", lambda c: c.set_power("off", wait=False))

    def power_cycle(self) -> None:
        """Hard off (waiting until the BMC reports off), then on.

        Not "reset if on, else on": a machine that switches itself off between
        the state query and the reset would stay off (a reset of an off chassis
        does nothing). Raises ``AuthError`` / ``Transient``.
        """
        self._call("power off", lambda c: c.set_power("off", wait=True))
        self.power_on()

    def set_next_boot(self, device: BootDevice) -> None:
        """Next boot from network or disk, once. Raises ``AuthError`` / ``Transient``."""
        name = "network" if device == BootDevice.PXE else "hd"
        self._call(f"set boot device {device}",
                   lambda c: c.set_bootdev(name, persist=False))

"""Redfish power control, on sushy (OpenStack Ironic's Redfish library).

The system is the first member of ``/redfish/v1/Systems`` (a BMC manages one
machine). One client, and so one session, is kept per driver: sushy logs in as
DMTF DSP0266 says (``POST /redfish/v1/SessionService/Sessions``, the token in
``X-Auth-Token``; HTTP Basic where the BMC has no session service), logs in again
when the BMC answers 401 (a session that timed out), and :meth:`RedfishPower.close`
logs out (``DELETE`` of the session's ``Location``). BMCs allow few sessions: a
login per call would use them up. sushy retries 5xx answers itself
(``server_side_retries``); that is lowered here so the bounded retries in this
class stay the only real loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from talprov.baremetal.errors import redfish_error
from talprov.baremetal.power.base import BootDevice, PowerState, Throttle
from talprov.providers.errors import NotFound, ProviderError, Transient
from talprov.secrets import keyed_digest

T = TypeVar("T")

log = logging.getLogger(__name__)


class RedfishPower:
    """One machine's BMC over Redfish, over one session. Thread-safe (calls to the
    BMC take turns); calls are spaced by ``min_interval``."""

    def __init__(
        self, address: str, username: str, password: str, *, port: int | None = None,
        verify: bool = True, min_interval: float = 0.5, attempts: int = 2,
        sleep: Callable[[float], None] = time.sleep, scheme: str = "https",
    ) -> None:
        if "://" in address:
            self.base_url = address.rstrip("/")
        else:
            self.base_url = f"{scheme}://{address}" + (f":{port}" if port else "")
        self._username = username
        self._password = password
        self.verify = verify
        self.attempts = max(1, attempts)
        self._sleep = sleep
        self._throttle = Throttle.for_bmc(f"redfish://{self.base_url}", min_interval)
        #: Drivers with the same key may share one client (and its session). Keyed
        #: with a per-process salt: a plain hash of a BMC password (often weak) would
        #: be an offline guessing oracle for anyone who sees the key.
        self.session_key = keyed_digest(
            f"{self.base_url}\0{username}\0{password}\0{verify}").hex()
        self._lock = threading.RLock()
        self._root: Any = None
        self._auth: Any = None
        self._system: Any = None
        #: The system was read by this call already: a state read needs no refresh.
        self._just_read = False

    def __repr__(self) -> str:
        return f"RedfishPower({self.base_url})"

    def _connect(self) -> Any:
        if self._root is None:
            import sushy
            from sushy import auth as sushy_auth

            # sushy logs ERROR for a session login the BMC refuses even when its
            # HTTP Basic fallback then works, and WARNING for paths it guesses:
            # noise on every call. Every failure that matters reaches this class
            # as an exception and is said once, translated (redfish_error).
            logging.getLogger("sushy").setLevel(logging.CRITICAL)
            auth = sushy_auth.SessionOrBasicAuth(username=self._username,
                                                 password=self._password)
            self._root = sushy.Sushy(self.base_url, auth=auth, verify=self.verify,
                                     server_side_retries=1, server_side_retries_delay=1,
                                     read_timeout=20)
            self._auth = auth
        if self._system is None:
            members = self._root.get_system_collection().get_members()
            if not members:
                raise NotFound("the BMC lists no system")
            self._system = members[0]
            self._just_read = True
        return self._system

    def _call(self, what: str, action: Callable[[Any], T]) -> T:
        last: ProviderError | None = None
        for attempt in range(self.attempts):
            self._throttle.wait()
            with self._lock:
                try:
                    return action(self._connect())
                except Exception as exc:
                    last = redfish_error(exc, what, endpoint=self.base_url)
                    # Read the system again next time; the session stays (sushy logs
                    # in again by itself when the BMC refuses its token).
                    self._system = None
                finally:
                    self._just_read = False
            if last.permanent or isinstance(last, NotFound):
                raise last
            if attempt + 1 < self.attempts:
                self._sleep(min(2.0 ** attempt, 5.0))
        assert last is not None
        raise last

    def close(self) -> None:
        """Log out of the BMC (best effort: a BMC that is gone ends the session by
        its timeout). Idempotent; a later call logs in again."""
        with self._lock:
            auth, self._root, self._auth, self._system = self._auth, None, None, None
            if auth is None:
                return
            try:
                auth.close()
            except Exception as exc:  # a logout that fails changes nothing here
                log.debug("logging out of %s failed: %s", self.base_url, type(exc).__name__)

    def power_state(self) -> PowerState:
        """The system's PowerState. Raises ``AuthError`` / ``Transient``. Read-only."""
        import sushy

        def read(system: Any) -> Any:
            if not self._just_read:
                system.refresh()
            return system.power_state

        state = self._call("get power", read)
        if state in (sushy.POWER_STATE_ON, sushy.POWER_STATE_POWERING_OFF):
            return PowerState.ON
        if state in (sushy.POWER_STATE_OFF, sushy.POWER_STATE_POWERING_ON):
            return PowerState.OFF
        return PowerState.UNKNOWN

    def _reset(self, what: str, reset_type: str) -> None:
        import sushy

        kinds = {"on": sushy.RESET_ON, "force off": sushy.RESET_FORCE_OFF,
                 "force restart": sushy.RESET_FORCE_RESTART}
        self._call(what, lambda s: s.reset_system(kinds[reset_type]))

    def power_on(self) -> None:
        """ResetType On. Idempotent. Raises ``AuthError`` / ``Transient``."""
        if self.power_state() != PowerState.ON:
            self._reset("power on", "on")

    def power_off(self) -> None:
        """ResetType ForceOff. Idempotent. Raises ``AuthError`` / ``Transient``."""
        if self.power_state() != PowerState.OFF:
            self._reset("power off", "force off")

    def power_cycle(self, *, off_timeout: float = 60.0, poll: float = 1.0) -> None:
        """Force off, wait until the BMC reports off, then on.

        Not "ForceRestart when on": a machine that switches itself off between
        the state query and the restart would stay off. BMCs apply power changes
        late (seconds), hence the wait. Raises ``AuthError``, or ``Transient``
        when the BMC does not report off within ``off_timeout`` seconds.
        """
        self.power_off()
        waited = 0.0
        while self.power_state() != PowerState.OFF:
            if waited >= off_timeout:
                raise Transient(f"{self.base_url}: still on {off_timeout:.0f}s after power off")
            self._sleep(poll)
            waited += poll
        self._reset("power on", "on")

    def set_next_boot(self, device: BootDevice) -> None:
        """BootSourceOverrideTarget Pxe/Hdd, enabled Once. Raises ``AuthError`` / ``Transient``."""
        import sushy

        target = sushy.BOOT_SOURCE_TARGET_PXE if device == BootDevice.PXE else (
            sushy.BOOT_SOURCE_TARGET_HDD)
        self._call(f"set boot device {device}", lambda s: s.set_system_boot_options(
            target=target, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE))

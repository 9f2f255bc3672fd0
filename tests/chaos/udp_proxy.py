"""A seeded fault proxy for a UDP service: IPMI over LAN (RMCP+) in front of ipmi_sim.

RMCP+ packets are authenticated and encrypted with the session's keys, so a
proxy cannot forge a BMC's error answer or a "node busy" completion code, and
IPMI has no Retry-After. What the network can do to them is what this does, to
``rate`` of the datagrams a client sends (drawn from ``random.Random(seed)``, the
same three draws per datagram as :class:`~tests.chaos.proxy.FaultProxy`):

- ``drop-before``: the request is lost; the BMC never sees it;
- ``drop-after``: the BMC gets the request and acts, its answer is lost;
- ``hold``: the BMC's answer arrives late.

pyghmi retransmits a request that got no answer, so a lost answer to "power on"
reaches the BMC twice (as it would on a real network).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

UDP_KINDS = ("drop-before", "drop-after", "hold")


@dataclass
class UdpFaultProxy:
    """``start()`` it, point the client at ``port``, ``stop()`` it."""

    backend_port: int
    seed: int
    rate: float = 0.0
    hold_seconds: tuple[float, float] = (0.2, 1.0)
    kinds: tuple[str, ...] = UDP_KINDS
    injected: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._front.settimeout(0.2)
        #: One backend socket per client address, so answers find their way back.
        self._backs: dict[tuple[str, int], socket.socket] = {}
        #: Per client: faults waiting for the BMC's next answer (drop-after, hold).
        self._pending: dict[tuple[str, int], list[tuple[str, float]]] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._front.getsockname()[1])

    def start(self) -> UdpFaultProxy:
        self._spawn(self._serve_front)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._front.close()
        for back in self._backs.values():
            back.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,  # type: ignore[arg-type]
                                  name="chaos-udp-proxy")
        self._threads.append(thread)
        thread.start()

    def choose(self) -> tuple[str | None, float]:
        """The fault for this datagram (or None) and how long a ``hold`` holds."""
        with self._lock:
            self.calls += 1
            roll, pick = self._random.random(), self._random.choice(self.kinds)
            hold = self._random.uniform(*self.hold_seconds)
            if roll >= self.rate:
                return None, 0.0
            self.injected[pick] += 1
            return pick, hold

    def _back_for(self, client: tuple[str, int]) -> socket.socket:
        with self._lock:
            back = self._backs.get(client)
            if back is None:
                back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                back.connect(("127.0.0.1", self.backend_port))
                back.settimeout(0.2)
                self._backs[client] = back
                self._pending[client] = []
                self._spawn(self._serve_back, client, back)
            return back

    def _serve_front(self) -> None:
        while not self._stopping.is_set():
            try:
                data, client = self._front.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            back = self._back_for(client)
            fault, hold = self.choose()
            if fault == "drop-before":
                continue
            if fault is not None:
                with self._lock:
                    self._pending[client].append((fault, hold))
            back.send(data)

    def _serve_back(self, client: tuple[str, int], back: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                data = back.recv(65535)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                pending = self._pending[client]
                fault, hold = pending.pop(0) if pending else (None, 0.0)
            if fault == "drop-after":
                continue
            if fault == "hold":
                threading.Timer(hold, self._send_front, (data, client)).start()
                continue
            self._send_front(data, client)

    def _send_front(self, data: bytes, client: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):  # stopped meanwhile
            self._front.sendto(data, client)


"""A TCP proxy that delays every byte from client to server by a fixed time.

For benches against an emulator that has no latency setting of its own (vcsim):
TLS passes through untouched (the certificate stays the server's), and each
request reaches the server ``latency`` seconds after the client sent it, however
it is split into segments, so every round trip costs ``latency`` once, as a
distant endpoint would. Connections are forwarded on threads; loopback only.

:class:`ProxyProcess` runs the proxy in a process of its own. A bench wants
that: forwarding takes three thread hops per request, and in the client's
process each hop waits for the GIL behind the client's own Python work, which
adds a delay that grows with the client's CPU, not one a network adds.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LatencyProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target_port``."""

    target_port: int
    latency: float
    port: int = 0
    _server: socket.socket | None = field(default=None, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> LatencyProxy:
        server = socket.create_server(("127.0.0.1", 0))
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Delayed(client, upstream, self.latency).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes as they come until either side closes."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Delayed:
    """Client to server: each chunk is sent ``latency`` after it arrived."""

    def __init__(self, source: socket.socket, sink: socket.socket, latency: float) -> None:
        self.source, self.sink, self.latency = source, sink, latency
        self._queue: list[tuple[float, int, bytes]] = []
        self._ready = threading.Condition()
        self._count = 0

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.source.recv(65536):
                self._push(data)
        self._push(b"")  # the client closed: pass that on, after its last bytes

    def _push(self, data: bytes) -> None:
        with self._ready:
            self._count += 1
            heapq.heappush(self._queue, (time.monotonic() + self.latency, self._count, data))
            self._ready.notify()

    def _write(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                due, _, data = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._ready.wait(wait)
                    continue
                heapq.heappop(self._queue)
            if not data:
                with contextlib.suppress(OSError):
                    self.sink.shutdown(socket.SHUT_WR)
                return
            try:
                self.sink.sendall(data)
            except OSError:
                return


@dataclass
class ProxyProcess:
    """A :class:`LatencyProxy` in a child process (``python tests/emulators/latency.py``)."""

    target_port: int
    latency: float
    port: int = 0
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self) -> ProxyProcess:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.target_port),
             str(self.latency)],
            stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the latency proxy did not start (it said {line!r})")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


def main(argv: list[str] | None = None) -> None:
    """Run a proxy until killed; its port is the first line on stdout."""
    parser = argparse.ArgumentParser(description="a TCP proxy that delays each request")
    parser.add_argument("target_port", type=int)
    parser.add_argument("latency", type=float, help="seconds")
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.target_port, args.latency).start()
    print(proxy.port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

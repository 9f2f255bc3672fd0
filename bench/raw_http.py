"""A lean HTTP/1.1 client for the service benchmarks' create phases.

On a machine with few cores the load generator competes with the servers it
measures: httpx spends about 5-7 ms of CPU per POST (bench/service_load.py
--scale prints it), more than the API process itself. This client sends
prepared request bytes over kept-alive connections and reads only the status
line, the headers and a ``Content-Length`` body, so that nearly all the CPU goes
to the processes under test. It speaks only what ``talprov serve`` answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Outcome:
    """Latencies of the calls answered 2xx, and how the others went."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def post_bytes(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """One ``POST path`` with a JSON ``body``, ready to write to a connection to ``url``."""
    payload = json.dumps(body).encode()
    return _head("POST", url, path, {**headers, "Content-Type": "application/json",
                                     "Content-Length": str(len(payload))}) + payload


def get_bytes(url: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    """One ``GET path``, ready to write to a connection to ``url``."""
    return _head("GET", url, path, headers or {})


def _head(method: str, url: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code (the body is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def send_all(urls: list[str], count: int, concurrency: int,
                   request: Callable[[int, str], bytes]) -> tuple[Outcome, float]:
    """``request(i, url)`` for i in 0..count-1 from ``concurrency`` connections,
    spread over ``urls`` (connection n goes to ``urls[n % len(urls)]``; call i goes
    to whichever connection is free). Returns the outcome and the wall-clock
    seconds."""
    outcome = Outcome()
    next_index = 0

    async def connection(number: int) -> None:
        nonlocal next_index
        url = urls[number % len(urls)]
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while next_index < count:
                index, next_index = next_index, next_index + 1
                started = time.perf_counter()
                try:
                    writer.write(request(index, url))
                    status = await _answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    outcome.failed(type(exc).__name__)
                    return
                if 200 <= status < 300:
                    outcome.latencies.append(time.perf_counter() - started)
                else:
                    outcome.failed(str(status))
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(concurrency)))
    return outcome, time.perf_counter() - began

"""peer_closed tells an idle pooled connection whose peer closed it from one that
still stands, also for a descriptor above select's FD_SETSIZE (1024), which a busy
service reaches: there select refused, and every pooled connection was dropped."""

from __future__ import annotations

import http.client
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from talprov.vmware.connections import peer_closed

HIGH_FD = 1500


@pytest.fixture
def pair() -> Iterator[tuple[http.client.HTTPConnection, socket.socket]]:
    """A connection whose socket sits at descriptor HIGH_FD, and its peer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, HIGH_FD + 100), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > HIGH_FD, "cannot open fd 1500"
    ours, peer = socket.socketpair()
    os.dup2(ours.fileno(), HIGH_FD)
    ours.close()
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = socket.socket(fileno=HIGH_FD)
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_idle_connection_above_fd_setsize_still_stands(
        pair: tuple[http.client.HTTPConnection, socket.socket]) -> None:
    conn, _peer = pair
    assert conn.sock is not None
    assert conn.sock.fileno() > 1024
    assert peer_closed(conn) is False


def test_an_idle_connection_above_fd_setsize_closed_by_its_peer_is_seen(
        pair: tuple[http.client.HTTPConnection, socket.socket]) -> None:
    conn, peer = pair
    peer.close()
    assert peer_closed(conn) is True

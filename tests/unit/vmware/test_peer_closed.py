"""peer_closed tells an idle pooled connection whose peer closed it from one that
still stands, also for a descriptor above select's FD_SETSIZE (1024), which a busy
service reaches: there select refused, and every pooled connection was dropped."""

from __future__ import annotations

import http.client
import os
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.vmware.connections import peer_closed
from tests.unit.autoscaler.certs import localhost_server

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


def test_an_idle_tls_connection_holding_only_session_tickets_still_stands(
        tmp_path: Path) -> None:
    """A TLS 1.3 server sends its session tickets after the handshake: the idle
    connection is readable, yet healthy. Taken for closed, every connection was
    made anew (a TLS handshake per call: seen on vcsim, 3 in 134 calls)."""
    ca_file, cert, key = localhost_server(tmp_path, "tickets")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        raw, _ = listener.accept()
        accepted.append(server_context.wrap_socket(raw, server_side=True))

    thread = threading.Thread(target=accept)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", listener.getsockname()[1],
                                       context=client_context, timeout=5)
    try:
        conn.connect()
        thread.join(5)
        assert conn.sock is not None
        deadline = time.monotonic() + 5
        while not select.select([conn.sock], [], [], 0.05)[0]:  # the tickets came
            assert time.monotonic() < deadline, "no session ticket arrived"
        assert peer_closed(conn) is False
        assert conn.sock.gettimeout() == 5  # put back as it was
        accepted[0].close()  # now the peer really closes
        deadline = time.monotonic() + 5
        while not peer_closed(conn):
            assert time.monotonic() < deadline, "the close was not seen"
            time.sleep(0.01)
    finally:
        conn.close()
        listener.close()
        for sock in accepted:
            sock.close()

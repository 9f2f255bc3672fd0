"""pyVmomi's pool of keep-alive connections, made to skip the ones the peer closed.

pyVmomi keeps up to ``poolSize`` (5) connections per session and sends each call
on the most recently returned one without looking at it. vCenter, and load
balancers before it, close connections that sat idle; a call sent on one then
gets no answer ("Remote end closed connection without response", a broken pipe,
a TLS EOF), which reads as "vCenter unreachable" and fails a step (and ``call``,
which does not retry) for a connection nobody needed any more.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
from typing import Any


def peer_closed(conn: http.client.HTTPConnection) -> bool:
    """Whether the idle pooled ``conn`` must not carry another request: the peer
    closed it (or sent bytes no request asked for). A connection without a socket
    is not: ``http.client`` opens a new one for the request. Costs no round trip.
    Never raises."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        fileno = sock.fileno()
    except OSError:
        return True
    if fileno < 0:  # closed here already
        return True
    # poll, not select: select refuses a descriptor above FD_SETSIZE (1024), which
    # a busy service reaches, and would then have every pooled connection dropped.
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    try:
        if not poller.poll(0):
            return False
    except OSError:
        return True
    return _readable_means_closed(sock)


def _readable_means_closed(sock: socket.socket) -> bool:
    """Whether an idle socket poll calls readable holds an end (or stray bytes)
    rather than TLS records alone: a TLS 1.3 server sends its session tickets
    after the handshake, which leaves a healthy idle connection readable (seen
    on vcsim: every connection made anew, a TLS handshake each). A non-blocking
    read tells them apart: TLS that consumed only such records wants more."""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        if isinstance(sock, ssl.SSLSocket):
            sock.recv(1)  # any byte of an answer nobody asked for: not reusable
        else:
            sock.recv(1, socket.MSG_PEEK)
        return True  # b"" (the peer closed) or bytes no request asked for
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:  # reset, TLS alert or EOF: closed
        return True
    finally:
        with contextlib.suppress(OSError):  # closed meanwhile: nothing to restore
            sock.settimeout(timeout)


def skip_closed_connections(stub: Any) -> None:
    """Make pyVmomi's SOAP ``stub`` close and skip a pooled connection the peer has
    closed instead of sending the next call on it (at worst it makes a new one).

    Nothing has been sent on a skipped connection, so this is as safe for writes
    (clone, power, destroy) as for reads. A peer that closes in the instant
    between this look and the request still fails that call: then the request
    may have been read, so only reads are repeated (``VSphereClient.read``); a
    write's step looks at what happened on its next attempt. Idempotent in
    effect (wrapping twice only looks twice). Never raises.
    """
    take = stub.GetConnection
    # The pool holds at most poolSize connections: after that many closed ones it
    # is empty and the next is new (a new one the server closed at once is used
    # as it is, rather than making connections without end).
    tries = max(int(getattr(stub, "poolSize", 5)), 1)

    def get_connection() -> Any:
        for _ in range(tries):
            conn = take()
            if not peer_closed(conn):
                return conn
            conn.close()
        return take()

    stub.GetConnection = get_connection

"""A pooled connection that vCenter (or a load balancer before it) closed while it
sat idle is not used for the next call.

pyVmomi keeps up to five keep-alive connections per session and takes the most
recent one for the next SOAP call, without looking whether the peer has closed
it since. Sent on such a connection, a call got "Remote end closed connection
without response" (or a broken pipe), which reads as "vCenter unreachable
(connection failed)": a step failed, and ``call`` (which does not retry) failed
at once, for a connection nobody needed any more. Real vCenters and load
balancers close idle keep-alive connections; vcsim does not, so a proxy here
does it on demand.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from talprov.vmware.client import VSphereClient, ssl_context
from talprov.vmware.vapi import VapiClient
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import vsphere_config

LIBRARIES = "/com/vmware/content/library"


class ClosingProxy:
    """Forwards 127.0.0.1 connections to ``target_port`` untouched (TLS passes
    through) and, on :meth:`close_all`, closes every connection it carries, as a
    server or load balancer closing idle keep-alive connections would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close_all(self) -> int:
        """Close every connection (both ends); returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        return len(pairs)

    def stop(self) -> None:
        self._server.close()
        self.close_all()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)


@pytest.fixture
def proxy(vcsim: VcsimServer) -> Iterator[ClosingProxy]:
    running = ClosingProxy(vcsim.port)
    yield running
    running.stop()


@pytest.fixture
def client(vcsim: VcsimServer, proxy: ClosingProxy) -> Iterator[VSphereClient]:
    url = vcsim.url.replace(f":{vcsim.port}/", f":{proxy.port}/")
    made = VSphereClient(vsphere_config(vcsim, url=url))
    yield made
    made.close()


def _pooled(client: VSphereClient) -> list[Any]:
    stub = client._session()._stub  # the pool is what is tested
    return [conn for conn, _ in stub.pool]


def _close_idle(proxy: ClosingProxy, client: VSphereClient) -> None:
    """Close the client's idle connections at the proxy, and wait until the client's
    end of each has seen the close (the proxy's close happened before: this wait
    cannot be satisfied early)."""
    pooled = _pooled(client)
    assert pooled, "no pooled connection: nothing would be reused"
    assert proxy.close_all() >= len(pooled)
    for conn in pooled:
        readable, _, _ = select.select([conn.sock], [], [], 10)
        assert readable, "the client never saw the proxy close its connection"


def test_a_read_after_the_server_closed_the_idle_connection_succeeds(
    client: VSphereClient, proxy: ClosingProxy,
) -> None:
    first = client.call("read the time", lambda si: si.CurrentTime())
    _close_idle(proxy, client)
    # ``call`` does not retry: this passes only if the dead connection is not used.
    assert client.call("read the time", lambda si: si.CurrentTime()) >= first


def test_a_write_after_the_server_closed_the_idle_connection_is_sent_once(
    client: VSphereClient, proxy: ClosingProxy,
) -> None:
    def make_folder(si: Any, name: str) -> Any:
        datacenter = si.content.rootFolder.childEntity[0]
        return datacenter.vmFolder.CreateFolder(name)

    client.call("make folder", lambda si: make_folder(si, "before"))
    _close_idle(proxy, client)
    client.call("make folder", lambda si: make_folder(si, "after"))
    names = client.call("list folders", lambda si: [
        child.name for child in si.content.rootFolder.childEntity[0].vmFolder.childEntity])
    assert names.count("after") == 1


def _vapi_sockets(vapi: VapiClient) -> list[socket.socket]:
    """The sockets of the REST client's idle pooled connections (httpcore's)."""
    pool = vapi._client()._transport._pool  # type: ignore[attr-defined]  # what is tested
    streams = [conn._connection._network_stream for conn in pool.connections]
    return [stream.get_extra_info("socket") for stream in streams]


def test_a_rest_call_after_the_server_closed_the_idle_connection_succeeds(
    vcsim: VcsimServer, proxy: ClosingProxy,
) -> None:
    url = vcsim.url.replace(f":{vcsim.port}/", f":{proxy.port}/")
    config = vsphere_config(vcsim, url=url)
    vapi = VapiClient(config, ssl_context(config))
    try:
        first = vapi.call("list libraries", "GET", LIBRARIES)
        sockets = _vapi_sockets(vapi)
        assert sockets, "no pooled connection: nothing would be reused"
        assert proxy.close_all() >= len(sockets)
        for sock in sockets:
            readable, _, _ = select.select([sock], [], [], 10)
            assert readable, "the client never saw the proxy close its connection"
        # httpx makes this check itself (the REST client needs no help): kept so
        # that a change of HTTP library shows if the new one does not.
        assert vapi.call("list libraries", "GET", LIBRARIES) == first
    finally:
        vapi.close()

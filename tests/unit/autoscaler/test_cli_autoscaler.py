"""``talprov autoscaler serve`` and ``talprov serve``'s service.autoscaler block, as
real processes answering the upstream-generated client."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import grpc
import pytest
import yaml

from talprov.providers.protocol import Runtime
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.autoscaler.upstream import Upstream
from tests.unit.autoscaler.world import client, make_pki, write_spec
from tests.unit.service.conftest import TOKENS
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.test_cli_sigterm import signalled


def record_cluster(home: Home) -> None:
    store = Store(home.store_url)
    store.migrate()
    Scaler(store, {}, Runtime(installation="t", cache_dir=home.root / "cache")).record(
        load_spec_file(write_spec(home.root)))
    store.close()


def grpc_port(server: ServeProcess) -> int:
    found: list[int] = []

    def seen() -> bool:
        match = re.search(r"autoscaler: gRPC on 127\.0\.0\.1:(\d+)", server.output())
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    wait_until(seen, 30, "the autoscaler's gRPC line")
    return found[0]


def group_ids(upstream: Upstream, port: int, root: bytes | None, cert: bytes | None = None,
              key: bytes | None = None) -> list[str]:
    stub, channel = client(upstream, port, root=root, cert=cert, key=key)
    with channel:
        groups = stub.NodeGroups(upstream.pb2.NodeGroupsRequest(), timeout=10).nodeGroups
        return [g.id for g in groups]


def test_serve_runs_the_autoscaler_beside_the_api(home: Home, upstream: Upstream) -> None:
    pki = make_pki(home.root)
    tls = {"cert": str(pki.server_tls.cert), "key": str(pki.server_tls.key),
           "ca": str(pki.server_tls.ca)}
    home.write_config(service={"tokens": TOKENS,
                               "autoscaler": {"listen": "127.0.0.1:0", "tls": tls}})
    record_cluster(home)
    server = ServeProcess(home.env(), home.root)
    try:
        assert server.url.startswith("http://127.0.0.1:")  # the API is up too
        port = grpc_port(server)
        assert group_ids(upstream, port, pki.ca.pem.cert, pki.client_cert,
                         pki.client_key) == ["demo/workers"]
    finally:
        code = server.terminate()
    assert code == 0, server.output()


def plain_with_workers(home: Home) -> subprocess.Popen[str]:
    """``talprov autoscaler serve --plain --with-workers`` on a free loopback port;
    its stderr goes to its stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "talprov", "autoscaler", "serve", "--plain",
         "--listen", "127.0.0.1:0", "--with-workers"],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def test_autoscaler_serve_plain_on_loopback_only(home: Home, upstream: Upstream) -> None:
    home.write_config()
    record_cluster(home)
    refused = home.run("autoscaler", "serve", "--plain", "--listen", "0.0.0.0:0", timeout=30)
    assert refused.returncode == 2
    assert "service.autoscaler" in refused.stderr
    assert "loopback" in refused.stderr
    no_tls = home.run("autoscaler", "serve", "--listen", "127.0.0.1:0", timeout=30)
    assert no_tls.returncode == 2
    assert "service.autoscaler" in no_tls.stderr
    assert "tls" in no_tls.stderr

    process = plain_with_workers(home)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line says where it listens
        match = re.search(r"autoscaler: gRPC on 127\.0\.0\.1:(\d+) \(plain\)", line)
        assert match, line
        assert group_ids(upstream, int(match.group(1)), None) == ["demo/workers"]
        # --with-workers: the run loop's scaler pass records the set's two machines.
        store = Store(home.store_url)
        try:
            wait_until(lambda: len(store.list_requests()) == 2, 30, "the scaler pass")
        finally:
            store.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0


def test_without_grpcio_the_command_names_the_extra(home: Home,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home.write_config()
    for name in [m for m in sys.modules if m.startswith("talprov.autoscaler")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    result = home.invoke("autoscaler", "serve", "--plain", "--listen", "127.0.0.1:0")
    assert result.exit_code == 2
    assert "pip install 'talprov[autoscaler]'" in result.output


def test_status_shows_the_bounds_and_scale_stays_within_them(home: Home) -> None:
    from tests.unit.test_cluster_apply import write_spec as write_fake_spec

    path = write_fake_spec(home.root, workers=2, control_planes=1)
    docs = list(yaml.safe_load_all(path.read_text()))
    docs[-1]["autoscaling"] = {"min": 1, "max": 4}
    path.write_text(yaml.safe_dump_all(docs))
    assert home.invoke("apply", "-f", str(path)).exit_code == 0
    status = home.invoke("status", "demo")
    assert "autoscaled (1..4)" in status.output
    refused = home.invoke("scale", "demo", "workers", "9")
    assert refused.exit_code == 2
    assert "demo/workers is autoscaled: the size must be within 1..4" in refused.output
    assert home.invoke("scale", "demo", "workers", "3").exit_code == 0
    # A later plan and apply of the same file keep the size set since.
    preview = json.loads(home.invoke("plan", "-f", str(path), "-o", "json").output)
    assert preview["summary"]["delete"] == 0
    assert home.invoke("apply", "-f", str(path)).exit_code == 0
    sets = json.loads(home.invoke("status", "demo", "-o", "json").output)["sets"]
    assert {s["name"]: s["desired"] for s in sets}["workers"] == 3


def test_unusable_tls_files_are_named(home: Home) -> None:
    pki = make_pki(home.root)
    other = pki.ca.issue("other", server=True)
    _cert, wrong_key = other.write(home.root, "other")
    mismatch = home.invoke("autoscaler", "serve", "--listen", "127.0.0.1:0",
                           "--cert", str(pki.server_tls.cert), "--key", str(wrong_key),
                           "--ca", str(pki.server_tls.ca))
    assert mismatch.exit_code == 2
    assert "service.autoscaler.tls: cannot use" in mismatch.output
    assert "KEY_VALUES_MISMATCH" in mismatch.output
    not_a_ca = home.invoke("autoscaler", "serve", "--listen", "127.0.0.1:0",
                           "--cert", str(pki.server_tls.cert), "--key", str(pki.server_tls.key),
                           "--ca", str(home.config_path))
    assert not_a_ca.exit_code == 2
    assert "service.autoscaler.tls.ca:" in not_a_ca.output
    assert "BEGIN" not in mismatch.output + not_a_ca.output  # no file content shown


def test_grpc_handshake_lines_go_through_talprovs_json_log(home: Home, upstream: Upstream
                                                           ) -> None:
    pki = make_pki(home.root)
    home.write_config()
    record_cluster(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "talprov", "--log-format", "json", "autoscaler", "serve",
         "--listen", "127.0.0.1:0", "--cert", str(pki.server_tls.cert),
         "--key", str(pki.server_tls.key), "--ca", str(pki.server_tls.ca)],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert process.stderr is not None
        first = json.loads(process.stderr.readline())  # where it listens, as a log object
        match = re.search(r"autoscaler: gRPC on 127\.0\.0\.1:(\d+) \(mTLS\)", first["message"])
        assert match, first
        with pytest.raises(grpc.RpcError):  # no client certificate: the handshake fails
            group_ids(upstream, int(match.group(1)), pki.ca.pem.cert)
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    records = [json.loads(line) for line in rest.splitlines()]  # every line parses
    handshake = [r for r in records if "handshake" in r["message"].lower()]
    assert handshake, records
    assert all(r["logger"].startswith("grpc") for r in handshake), handshake


@pytest.mark.parametrize(("first", "second"), [(signal.SIGTERM, signal.SIGINT),
                                               (signal.SIGINT, signal.SIGTERM)])
def test_a_second_signal_while_the_autoscaler_stops_is_ignored(
        home: Home, first: signal.Signals, second: signal.Signals) -> None:
    home.write_config()
    record_cluster(home)
    process = plain_with_workers(home)
    assert process.stdout is not None
    assert "autoscaler: gRPC on" in process.stdout.readline()
    output = signalled(process, first, 0.005, second)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert output.rstrip().endswith("autoscaler: stopped"), output

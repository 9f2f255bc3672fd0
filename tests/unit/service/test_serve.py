"""``talprov serve`` as a real process: HTTP, TLS, graceful SIGTERM."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from talprov.providers.types import Stage
from talprov.store.store import Store
from tests.helpers import SEEN_OUTPUT, WORKER_CONFIG, Home
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until


def stages(client: httpx.Client) -> dict[str, str]:
    items = client.get("/v1/machine-requests", headers=WRITE).json()["items"]
    return {i["id"]: i["stage"] for i in items}


def test_serve_provisions_over_http_and_stops_on_sigterm(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    server = ServeProcess(home.env(), home.root)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok", "store": "ok"}
            for n in range(5):
                body = request_body(f"srv-{n}", config=WORKER_CONFIG)
                response = client.post("/v1/machine-requests", json=body, headers=WRITE)
                assert response.status_code == 201, response.text
                SEEN_OUTPUT.append(response.text)
            wait_until(lambda: set(stages(client).values()) == {"provisioned"}, 30,
                       "provisioned")
    finally:
        code = server.terminate()
    assert code == 0, server.output()
    store = Store(home.store_url)
    assert all(store.lease_holder(f"srv-{n}") is None for n in range(5))
    store.close()
    assert len(Cloud(home.cloud_path()).machines()) == 5


def test_service_log_format_json_makes_every_line_json(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1,
                               "log_format": "json"})
    server = ServeProcess(home.env(), home.root, global_args=["-v"])
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = request_body("srv-json", config=WORKER_CONFIG)
            assert client.post("/v1/machine-requests", json=body,
                               headers=WRITE).status_code == 201
            wait_until(lambda: stages(client) == {"srv-json": "provisioned"}, 30,
                       "provisioned")
            assert client.get("/v1/machine-requests/srv-json", headers=WRITE).is_success
    finally:
        code = server.terminate()
    assert code == 0, server.output()
    records = [json.loads(line) for line in server.lines]  # every line parses
    assert any(r["message"].startswith("listening on") for r in records)
    about = [r for r in records if "srv-json" in r["message"]]
    from_talprov = [r for r in about if r["logger"].startswith("talprov")]
    assert any(r["logger"] == "uvicorn.access" for r in about)  # the GET of it
    assert any(r["message"].endswith("ready") for r in from_talprov)  # "provisioned: ..."
    assert all(r.get("request_id") == "srv-json" for r in from_talprov), from_talprov


def test_access_log_leaves_query_strings_out(home: Home) -> None:
    """A token or other secret put in a URL's query must not reach the log."""
    home.write_config(service={"tokens": TOKENS, "workers": False})
    server = ServeProcess(home.env(), home.root, global_args=["-v"])
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/healthz", params={"token": "hunter2-in-a-url"}).is_success
            listed = client.get("/v1/machine-requests", headers=WRITE,
                                params={"label": "secret=s3cr3t-label", "limit": 5})
            assert listed.is_success, listed.text
    finally:
        code = server.terminate()
    assert code == 0, server.output()
    access = [line for line in server.lines if "HTTP/1.1" in line]
    assert any('"GET /healthz?... HTTP/1.1" 200' in line for line in access), access
    assert any('"GET /v1/machine-requests?... HTTP/1.1" 200' in line for line in access), access
    assert "hunter2" not in server.output()
    assert "s3cr3t" not in server.output()


def test_serve_refuses_to_start_without_tokens(home: Home) -> None:
    result = home.run("serve", "--listen", "127.0.0.1:0", timeout=30)
    assert result.returncode == 2
    assert "service.tokens" in result.stderr


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def test_serve_speaks_tls_when_given_a_cert_and_key(home: Home) -> None:
    cert, key = _self_signed(home.root)
    home.write_config(service={"tokens": TOKENS, "tls": {"cert": str(cert), "key": str(key)},
                               "workers": False})
    server = ServeProcess(home.env(), home.root)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.url, verify=trusted, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/providers", headers=WRITE).status_code == 200
        # Verification stays on: a client that does not trust the cert refuses it.
        with (httpx.Client(base_url=server.url, timeout=10) as default_client,
              pytest.raises(httpx.ConnectError)):
            default_client.get("/healthz")
        plain = server.url.replace("https://", "http://")
        with httpx.Client(base_url=plain, timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get("/healthz")
    finally:
        assert server.terminate() == 0


def test_serve_runs_the_boot_server_of_a_baremetal_instance(home: Home) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        boot_port = probe.getsockname()[1]
    home.providers["metal"] = {
        "type": "baremetal", "inventory": str(home.root / "inventory.sqlite"),
        "boot_url": f"http://127.0.0.1:{boot_port}", "listen_address": "127.0.0.1",
        "listen_port": boot_port, "tftp_enabled": False, "mirror_dir": str(home.root / "mirror"),
    }
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.5})
    server = ServeProcess(home.env(), home.root)
    try:
        assert f"metal: boot server up; machines use http://127.0.0.1:{boot_port}" in (
            server.output())
        reply = httpx.get(f"http://127.0.0.1:{boot_port}/boot.ipxe",
                          params={"uuid": "11111111-2222-4333-8444-555555555555",
                                  "mac": "52:54:00:99:99:99"}, timeout=10)
        assert reply.status_code == 200
        assert reply.text.startswith("#!ipxe")
        assert "kernel" not in reply.text  # an unknown machine is only recorded
    finally:
        code = server.terminate()
    assert code == 0, server.output()
    with socket.socket() as again:  # the boot server let go of its port
        again.bind(("127.0.0.1", boot_port))


def test_serve_converges_a_recorded_cluster(home: Home) -> None:
    """Only serve's loop runs passes here: the spec is recorded without any."""
    from talprov.providers.protocol import Runtime
    from talprov.scaler.apply import Scaler
    from talprov.scaler.spec import load_spec_file
    from tests.unit.test_cluster_apply import write_spec

    store = Store(home.store_url)
    store.migrate()
    Scaler(store, {}, Runtime()).record(load_spec_file(write_spec(home.root, control_planes=1,
                                                                  workers=2)))
    assert store.list_requests() == []
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.2})
    server = ServeProcess(home.env(), home.root)
    try:
        wait_until(lambda: len(store.list_requests(stages=[Stage.PROVISIONED])) == 3, 60,
                   "the cluster's 3 machines provisioned")
    finally:
        code = server.terminate()
    assert code == 0, server.output()
    assert len(Cloud(home.cloud_path()).machines()) == 3
    store.close()

"""A ``verify_tls`` CA bundle deleted or emptied after the config was read (which
checked it) is named with the setting and the file, as the other drivers name a
``ca_file``: botocore takes only a path and loads it again for every new
connection, so every call of the instance fails alike until its operator restores
it (review: the calls failed with "endpoint unreachable (TLS handshake failed)")."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.aws import instances
from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.errors import InstanceUnavailable, Transient
from talprov.providers.protocol import Runtime
from talprov.pytest_plugin.fixtures import use_fake_aws_credentials
from tests.unit.autoscaler.certs import Authority


@pytest.fixture
def not_tls() -> Iterator[str]:
    """An https:// endpoint on 127.0.0.1 that accepts connections and never
    speaks TLS: a client loads its CA bundle before the handshake fails."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in accepted:
        conn.close()


def _provider(endpoint: str, bundle: Path, tmp_path: Path) -> AwsProvider:
    config = AwsConfig(region="eu-west-1", endpoint_url=endpoint, verify_tls=str(bundle),
                       max_attempts=1, connect_timeout=2, read_timeout=2)
    return AwsProvider("dev", config, Runtime(installation="talprov-ca",
                                              cache_dir=tmp_path / "cache"))


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_ca_bundle_gone_after_start_is_named_with_its_setting(
        not_tls: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    use_fake_aws_credentials(monkeypatch)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Authority("aws").pem.cert)
    provider = _provider(not_tls, bundle, tmp_path)
    ec2 = provider.clients.ec2  # built at start, with the bundle there
    if how == "deleted":
        bundle.unlink()
    else:
        bundle.write_text("")
    with pytest.raises(InstanceUnavailable) as raised:
        instances.describe_one(ec2, "i-1")
    text = str(raised.value)
    assert text.startswith(f"DescribeInstances at {not_tls}: ")
    problem = "no such file" if how == "deleted" else "holds no PEM certificate"
    assert f"providers.dev.verify_tls {bundle}: {problem}" in text


def test_a_handshake_that_fails_with_the_bundle_there_is_not_blamed_on_it(
        not_tls: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws_credentials(monkeypatch)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Authority("aws").pem.cert)
    provider = _provider(not_tls, bundle, tmp_path)
    with pytest.raises(Transient) as raised:
        instances.describe_one(provider.clients.ec2, "i-1")
    assert not isinstance(raised.value, InstanceUnavailable)
    assert "verify_tls" not in str(raised.value)

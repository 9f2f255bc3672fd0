"""What an operator sees from the CLI when things are broken (issue 14)."""

from __future__ import annotations

import json
import socket

from tests.helpers import Home


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_providers_health_exits_1_when_an_instance_is_unhealthy(home: Home) -> None:
    """Before: exit 0 whatever the health said."""
    home.providers["missing"] = {"type": "proxmox", "url": f"https://127.0.0.1:{closed_port()}",
                                 "token_id": "root@pam!t", "token_secret": "s" * 20,
                                 "timeout": 2}
    home.write_config()
    result = home.invoke("providers", "--health", "-o", "json")
    assert result.exit_code == 1, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout) if row["kind"] == "instance"}
    assert rows["missing"]["detail"].startswith("unhealthy")
    assert home.invoke("providers", "-o", "json").exit_code == 0


def test_provider_errors_reach_the_user_without_class_names() -> None:
    """Before: `talprov: error: Transient: connection refused`."""
    import click
    from click.testing import CliRunner

    from talprov.cli.app import handle_errors
    from talprov.providers.errors import AuthError, Transient

    for error, kind in ((Transient("connection refused"), "not answering"),
                        (AuthError("401 from https://pve:8006"), "credentials refused")):
        @click.command()
        @handle_errors
        def failing(error: Exception = error) -> None:
            raise error

        result = CliRunner().invoke(failing, [])
        assert result.exit_code == 1
        assert result.output == f"talprov: error: {kind}: {error}\n"
        assert type(error).__name__ not in result.output

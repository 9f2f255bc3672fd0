"""A Proxmox url with credentials in it (QA): config check, serve, providers
--health and reconcile --once crashed in host_port with a traceback that showed
the password. Credentials belong in username/password or the token settings."""

from __future__ import annotations

import pytest

from tests.helpers import Home

PASSWORD = "pw-QA-canary"


@pytest.mark.parametrize("command", [("config", "check"), ("providers", "--health"),
                                     ("reconcile", "--once"), ("machine", "list")])
def test_a_url_with_credentials_is_refused_without_showing_them(
    home: Home, command: tuple[str, ...]
) -> None:
    home.providers = {"pve": {"type": "proxmox", "url": f"https://root:{PASSWORD}@127.0.0.1:1",
                              "username": "root@pam", "password": "secret-pass"}}
    home.write_config()
    result = home.invoke(*command)
    said = result.output + (result.stderr or "")
    assert "Traceback" not in said
    assert PASSWORD not in said
    assert "providers.pve.url" in said
    assert result.exit_code == 2

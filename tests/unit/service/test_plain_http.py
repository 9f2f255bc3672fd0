"""``talprov serve`` refuses plain HTTP on a routable address unless told
otherwise (issue 15, hole 5). Nothing here binds a non-loopback address: the
refusal comes before the bind, and the allowed case uses an address this
machine does not have, so the bind fails locally."""

from __future__ import annotations

import json

import pytest

from talprov.service.config import is_loopback
from tests.helpers import Home
from tests.unit.service.conftest import TOKENS


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "10.255.255.1:0", "[::]:0",
                                    "talprov.example:0"])
def test_plain_http_on_a_routable_address_is_refused(home: Home, listen: str) -> None:
    home.write_config(service={"tokens": TOKENS, "workers": False})
    result = home.invoke("serve", "--listen", listen)
    assert result.exit_code == 2, result.output
    # The address came from the flag: the error names the flag (QA: it named the file).
    assert "--listen: refusing plain HTTP" in result.output
    assert "service.listen" not in result.output.split("refusing")[0]
    assert "--insecure-http" in result.output
    home.write_config(service={"tokens": TOKENS, "workers": False, "listen": listen})
    result = home.invoke("serve")
    assert result.exit_code == 2, result.output
    assert "service.listen: refusing plain HTTP" in result.output


def test_insecure_http_lets_serve_go_on_with_a_warning(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "workers": False})
    result = home.invoke("serve", "--listen", "10.255.255.1:0", "--insecure-http")
    assert "refusing" not in result.output
    assert "warning: plain HTTP on 10.255.255.1" in result.output
    # It got as far as binding, which fails: this machine has no such address.
    assert "--listen 10.255.255.1:0" in result.output


def test_the_config_key_is_the_same_as_the_flag(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "workers": False, "insecure_http": True})
    result = home.invoke("serve", "--listen", "10.255.255.1:0")
    assert "refusing" not in result.output
    assert "warning: plain HTTP" in result.output


def test_the_warning_is_a_log_record_under_json_logs(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS[:1], "workers": False})
    result = home.run("--log-format", "json", "serve", "--listen", "10.255.255.1:0",
                      "--insecure-http")
    records = [json.loads(line) for line in result.stderr.splitlines()]
    warned = [r for r in records if "plain HTTP on 10.255.255.1" in r["message"]]
    assert len(warned) == 1, result.stderr
    assert warned[0]["level"] == "WARNING"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.org", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_token_scoped_to_an_unknown_instance_is_named_at_start(home: Home) -> None:
    tokens = [{**TOKENS[0], "providers": ["fkae"]}]  # a typo of "fake"
    home.write_config(service={"tokens": tokens, "workers": False})
    # Refused later for plain HTTP on a routable address: the warning comes first.
    result = home.invoke("serve", "--listen", "10.255.255.1:0")
    assert "service.tokens[0].providers: no provider instance named 'fkae' here" in (
        result.output)


def test_insecure_http_warns_once(home: Home) -> None:
    """QA: `serve --insecure-http` printed the warning twice on stderr (the log
    line and a second line of its own). A process of its own: the log handler
    writes to the real stderr, which CliRunner does not capture."""
    home.write_config(service={"tokens": TOKENS, "workers": False})
    result = home.run("serve", "--listen", "10.255.255.1:0", "--insecure-http")
    assert "--listen 10.255.255.1:0" in result.stderr, result.stderr  # got to the bind
    assert result.stderr.count("plain HTTP on 10.255.255.1") == 1, result.stderr

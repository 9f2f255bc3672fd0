"""URLs and ports a client or bind() would refuse only when first used are refused
when the config is read (QA: `config check` said ok, then a command crashed with
httpx.InvalidURL or OverflowError)."""

from __future__ import annotations

import pytest

from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:34261 http://x", "spaces"),
    ("http://:80/", "no host"),
    ("http://127.0.0.1:99999", "1 to 65535"),
])
def test_a_factory_url_that_cannot_be_used_is_refused_on_load(
    home: Home, url: str, words: str
) -> None:
    home.write_config(image_factory={"url": url})
    for command in (("config", "check"), ("providers",)):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "image_factory.url", words)


@pytest.mark.parametrize(("listen", "words"), [
    ("127.0.0.1:99999", "port 99999 is above 65535"),
    ("localhost", "expected HOST:PORT"),
    ("127.0.0.1:http", "expected HOST:PORT"),
])
def test_a_bad_listen_address_is_a_load_error_naming_the_field(
    home: Home, listen: str, words: str
) -> None:
    """QA: `config check` showed it as a row (exit 1) with a raw regex ("must match
    ^(?P<host>…"), and other commands loaded the config without a word."""
    home.write_config(service={"listen": listen, "tokens": [{"name": "t", "value": "x" * 20}]})
    for command in (("config", "check"), ("providers",), ("serve",)):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "service.listen", words)
        assert "(?P<" not in result.output


def test_a_bad_listen_option_says_what_is_wrong(home: Home) -> None:
    """QA: `serve --listen 127.0.0.1:99999` said only "expected HOST:PORT"."""
    home.write_config(service={"tokens": [{"name": "t", "value": "x" * 20}]})
    result = home.invoke("serve", "--listen", "127.0.0.1:99999")
    assert_usage_error(result.exit_code, result.output, "--listen", "port 99999 is above 65535")
    result = home.invoke("serve", "--listen", "8080")
    assert_usage_error(result.exit_code, result.output, "--listen", "expected HOST:PORT")
    # QA: an empty --listen served on the config's address as if none were given.
    result = home.invoke("serve", "--listen", "")
    assert_usage_error(result.exit_code, result.output, "--listen", "expected HOST:PORT")


def test_a_duplicate_token_is_named_by_its_index_without_its_secret(home: Home) -> None:
    """QA: the message named both tokens but not which entry of service.tokens to fix."""
    secret = "duplicated-secret-" + "x" * 8
    home.write_config(service={"tokens": [
        {"name": "reader", "value": "r" * 20},
        {"name": "a", "value": secret, "access": "read"},
        {"name": "b", "value": secret, "access": "write"},
    ]})
    result = home.invoke("config", "check", "-o", "json")
    assert "service.tokens[2]" in result.output, result.output
    assert "tokens[1]" in result.output.replace("tokens[2]", "")
    assert secret not in result.output
    home.write_config(service={"tokens": [
        {"name": "a", "value": "r" * 20}, {"name": "a", "value": "s" * 20}]})
    result = home.invoke("config", "check", "-o", "json")
    assert "service.tokens[1].name" in result.output, result.output

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
    ("http://127.0.0.1:99999", "0 to 65535"),
])
def test_a_factory_url_that_cannot_be_used_is_refused_on_load(
    home: Home, url: str, words: str
) -> None:
    home.write_config(image_factory={"url": url})
    for command in (("config", "check"), ("providers",)):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "image_factory.url", words)


def test_a_listen_port_beyond_65535_is_refused_on_load(home: Home) -> None:
    home.write_config(service={"listen": "127.0.0.1:99999", "tokens": [
        {"name": "t", "value": "x" * 20}]})
    check = home.invoke("config", "check")
    assert check.exit_code == 1, check.output  # config check reports per part
    assert "service.listen: port 99999 is not in 0..65535" in check.output
    served = home.invoke("serve")
    assert_usage_error(served.exit_code, served.output, "service.listen", "99999")

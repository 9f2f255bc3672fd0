"""``service.autoscaler.listen`` is judged by the same rule as ``service.listen``."""

from __future__ import annotations

import pytest

from talprov.autoscaler.config import parse_autoscaler_config
from talprov.errors import ConfigError


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:99999", "service.autoscaler.listen: port 99999 is above 65535"),
        ("localhost", "service.autoscaler.listen: expected HOST:PORT"),
    ],
)
def test_a_bad_autoscaler_listen_says_what_is_wrong(listen: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_autoscaler_config({"listen": listen, "plain": True}, where="service.autoscaler")
    assert expected in str(caught.value)
    assert "pattern" not in str(caught.value)  # no regex shown to a person


def test_an_ipv6_autoscaler_listen_is_split_without_brackets() -> None:
    config = parse_autoscaler_config({"listen": "[::1]:8086", "plain": True},
                                     where="service.autoscaler")
    assert config.host_port() == ("::1", 8086)

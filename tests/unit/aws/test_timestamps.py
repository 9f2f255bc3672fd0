"""The AWS clients' timestamp parser gives what botocore's own gives, faster."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from botocore.utils import parse_timestamp as botocore_parse

from talprov.aws.client import AwsClients, parse_timestamp
from talprov.aws.config import AwsConfig

#: botocore's parser; its stubs say str, yet JSON protocols hand it numbers.
REFERENCE: Callable[[Any], datetime] = botocore_parse
SAMPLES = [
    "2026-12-06T05:57:18.000Z",  # EC2's LaunchTime
    "2026-12-06T05:57:18Z",
    "2026-12-06T05:57:18.123456+02:00",
    "2026-12-06T05:57:18",  # no zone: botocore's rule applies
    "Sun, 06 Dec 2026 05:57:18 GMT",  # RFC 822 (S3 headers)
    1765000638,  # epoch seconds (JSON protocols)
    "1765000638.5",
]


@pytest.mark.parametrize("value", SAMPLES)
def test_every_format_parses_to_botocores_instant_and_zone_awareness(value: str | int) -> None:
    ours, theirs = parse_timestamp(value), REFERENCE(value)
    assert ours == theirs
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)
    assert ours.utcoffset() == theirs.utcoffset()


def test_the_clients_use_it() -> None:
    clients = AwsClients(AwsConfig(region="eu-west-1", endpoint_url="http://127.0.0.1:9"))
    factory = clients.session._session.get_component("response_parser_factory")
    assert factory._defaults["timestamp_parser"] is parse_timestamp

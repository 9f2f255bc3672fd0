"""Join values are checked where they are modelled, for every way a request comes in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from talprov.providers.types import JoinSpec

TOKEN = "jointoken=J0IN-SECRET-abc"


@pytest.mark.parametrize("url", [
    "https://omni.example:8090/?" + TOKEN,
    "http://10.0.0.1:8090/?" + TOKEN,
    "grpc://[fd00::1]:8090?" + TOKEN,
])
def test_usable_urls_are_accepted(url: str) -> None:
    assert JoinSpec.model_validate({"api_url": url}).api_url.get_secret_value() == url


@pytest.mark.parametrize(("fields", "field"), [
    ({"api_url": ""}, "api_url"),
    ({"api_url": "ftp://omni.example/?" + TOKEN}, "api_url"),
    ({"api_url": "https:///?" + TOKEN}, "api_url"),
    ({"api_url": "https://omni.example/?" + TOKEN + " talos.config=http://evil/"}, "api_url"),
    ({"api_url": "https://[fd00::1/?" + TOKEN}, "api_url"),
    ({"api_url": "https://omni.example/?" + TOKEN, "events_sink": "[fd00::1]:8090 x=y"},
     "events_sink"),
    ({"api_url": "https://omni.example/?" + TOKEN, "kmsg_log": "tcp://[fd00::1]:8092\n"},
     "kmsg_log"),
])
def test_unusable_values_name_the_field_and_never_quote_the_url(
        fields: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JoinSpec.model_validate(fields)
    errors = caught.value.errors(include_input=False)
    assert [e["loc"] for e in errors] == [(field,)]
    assert "J0IN-SECRET" not in str(errors)

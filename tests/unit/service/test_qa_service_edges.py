"""Edges of the service found by a QA pass: each failed before its fix."""

from __future__ import annotations

import pytest

from talprov.errors import ConfigError
from talprov.service.config import parse_service_config
from tests.unit.service.conftest import WRITE_TOKEN, Api
from tests.unit.service.test_ui import sign_in


def test_two_tokens_with_one_secret_are_refused() -> None:
    # The first match won every call: the second token's access was unusable.
    same = r"tokens\[1\]: token 'b' has the same secret as tokens\[0\] \('a'\)"
    with pytest.raises(ConfigError, match=same):
        parse_service_config({"tokens": [
            {"name": "a", "value": "x" * 20, "access": "read"},
            {"name": "b", "value": "x" * 20, "access": "write"},
        ]})


def test_healthz_answers_head(idle_api: Api) -> None:
    response = idle_api.client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


def test_changes_since_the_year_one_is_everything_not_a_500(idle_api: Api) -> None:
    client = idle_api.client
    sign_in(client, WRITE_TOKEN)
    response = client.get("/ui/changes", params={"since": "0001-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert "watermark" in response.json()

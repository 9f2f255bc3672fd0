"""A Talos version older than the oldest line talprov carries rules for (v1.9) is
refused when a request is made, naming the field and the supported lines.

Before: v1.8.x was accepted and checked by the v1.9 schema with only a warning in
the log, so a request talprov cannot serve correctly (v1.8's images and boot
differ) was recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from talprov.providers.types import STORED, MachineRequest
from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.test_cli import assert_usage_error

SUPPORTED = "v1.9, v1.10, v1.11, v1.12, v1.13"


def test_a_request_file_for_v1_8_is_refused(home: Home) -> None:
    request = home.write_request("old-1", talos_version="v1.8.3")
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: talos_version",
                       "older than the Talos versions talprov supports", SUPPORTED)
    assert "old-1" not in home.invoke("machine", "list", "-o", "json").output


def test_a_cluster_spec_for_v1_8_is_refused(home: Home) -> None:
    spec = home.write_spec(version="v1.8.0")
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, "talos.version", SUPPORTED)


def test_image_urls_refuse_v1_8(home: Home) -> None:
    schematic = home.root / "schematic.yaml"
    schematic.write_text("customization: {}\n")
    result = home.invoke("image", "urls", "-f", str(schematic), "--version", "v1.8.4")
    assert_usage_error(result.exit_code, result.output, "--version", SUPPORTED)


@pytest.fixture
def api(home: Home) -> Iterator[Api]:
    yield from open_api(home)


def test_the_api_refuses_v1_8_with_422(api: Api) -> None:
    body = request_body("old-api", talos_version="v1.8.3", config=WORKER_CONFIG)
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "talos_version"]
    # Error bodies never repeat what was sent (docs/service.md): the field, not the value.
    assert detail["msg"].startswith("talos_version is older than the Talos versions")
    assert SUPPORTED in detail["msg"]
    assert "v1.8.3" not in response.text


def test_a_stored_request_for_an_old_line_still_reads() -> None:
    """Requests recorded before the rule keep working (deleting them, above all)."""
    body = {"id": "r", "provider": "x", "talos_version": "v1.8.3",
            "machine_config": SecretStr("")}
    assert MachineRequest.model_validate(body, context=STORED).talos_version == "v1.8.3"
    with pytest.raises(ValueError, match="older than the Talos versions"):
        MachineRequest.model_validate(body)

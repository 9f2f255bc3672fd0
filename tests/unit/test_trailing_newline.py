"""Python's ``$`` also matches before a trailing newline: a value checked with
``re.match`` against an anchored pattern took "v1.13.9\\n" (QA: the API answered 201,
the request then failed for good at resolve-image, and the newline split serve's log
line in two). Every such check must refuse it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import MachineRequest, malformed_talos_version
from talprov.talos.assets import check_ids
from tests.helpers import WORKER_CONFIG, Home


def test_a_talos_version_with_a_trailing_newline_is_malformed() -> None:
    assert malformed_talos_version("v1.13.9") is None
    assert malformed_talos_version("v1.13.9\n") is not None
    with pytest.raises(ValidationError):
        MachineRequest(id="r-1", provider="p", talos_version="v1.13.9\n",
                       machine_config=SecretStr(WORKER_CONFIG))


def test_asset_ids_with_a_trailing_newline_are_refused() -> None:
    check_ids("0" * 64, "v1.13.9")
    with pytest.raises(InvalidRequest):
        check_ids("0" * 64, "v1.13.9\n")
    with pytest.raises(InvalidRequest):
        check_ids("0" * 64 + "\n", "v1.13.9")


def test_the_api_and_a_request_file_refuse_it(home: Home) -> None:
    request = home.write_request("nl-1")
    request.write_text(request.read_text().replace("v1.13.9", '"v1.13.9\\n"'))
    assert "v1.13.9\\n" in request.read_text()
    created = home.invoke("machine", "create", "-f", str(request))
    assert created.exit_code == 2, created.output
    assert "talos_version" in created.output


def test_an_instance_name_with_a_trailing_newline_is_refused(home: Home) -> None:
    home.providers["aws\n"] = home.providers.pop(next(iter(home.providers)))
    home.write_config()
    result = home.invoke("providers")
    assert result.exit_code == 2, result.output
    assert "instance names are lowercase" in result.output

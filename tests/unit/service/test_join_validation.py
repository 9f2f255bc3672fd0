"""Omni join values are checked before they can reach a kernel command line.

``siderolink.api=<api_url>``, ``talos.events.sink=…`` and
``talos.logging.kernel=…`` are kernel arguments in ``kernel_args`` mode: a space
would smuggle extra arguments in, and an unusable URL only fails on the machine.
"""

from __future__ import annotations

import pytest

from tests.unit.service.conftest import WRITE, Api, request_body

TOKEN = "jointoken=J0IN-SECRET-5e1f"


@pytest.mark.parametrize(("join", "field"), [
    ({"api_url": f"https://omni.example:8090/?{TOKEN} talos.config=http://evil/"}, "api_url"),
    ({"api_url": f"https://omni.example/?{TOKEN}\n"}, "api_url"),
    ({"api_url": ""}, "api_url"),
    ({"api_url": f"omni.example/?{TOKEN}"}, "api_url"),
    ({"api_url": f"ftp://omni.example/?{TOKEN}"}, "api_url"),
    ({"api_url": f"https:///?{TOKEN}"}, "api_url"),
    ({"api_url": f"https://[::1/?{TOKEN}"}, "api_url"),
    # Talos refuses these in SideroLinkConfig: scheme http, a path.
    ({"api_url": f"http://10.0.0.5:8090?{TOKEN}"}, "api_url"),
    ({"api_url": f"https://omni.example/siderolink?{TOKEN}"}, "api_url"),
    ({"api_url": f"https://omni.example/?{TOKEN}", "events_sink": "[fd00::1]:8090 x=y"},
     "events_sink"),
    ({"api_url": f"https://omni.example/?{TOKEN}", "kmsg_log": "tcp://[fd00::1]:8092\t"},
     "kmsg_log"),
])
def test_unusable_join_values_are_422_naming_the_field(
    idle_api: Api, join: dict[str, str], field: str
) -> None:
    response = idle_api.request("POST", "/v1/machine-requests", headers=WRITE,
                                json=request_body("join-bad", join=join))
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "join", field]
    assert "J0IN-SECRET" not in response.text
    assert idle_api.request("GET", "/v1/machine-requests/join-bad",
                            headers=WRITE).status_code == 404


@pytest.mark.parametrize("url", [
    f"https://omni.example:8090/?{TOKEN}",
    f"https://10.0.0.5:8090?{TOKEN}",
    f"grpc://[fd00::1]:8090?{TOKEN}",
])
def test_usable_join_urls_are_accepted(idle_api: Api, url: str) -> None:
    response = idle_api.request("POST", "/v1/machine-requests", headers=WRITE,
                                json=request_body("join-ok", join={"api_url": url}))
    assert response.status_code == 201, response.text
    assert response.json()["join"] is True
    assert "J0IN-SECRET" not in response.text

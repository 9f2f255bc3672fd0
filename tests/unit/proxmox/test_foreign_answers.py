"""An endpoint that answers, but not as PVE (a proxy's or web server's page): health
and steps say so with the endpoint, status and content type, never the body (QA:
health said "Proxmox VE ?" and was healthy on an HTML page)."""

from __future__ import annotations

import pytest

from talprov.providers.errors import Transient
from talprov.providers.types import Owner
from talprov.proxmox.provider import ProxmoxProvider
from tests.emulators.fakepve import FakePveServer

PAGE = "<html><body>Welcome to nginx page-canary-4b2e</body></html>"


def _origin(fakepve: FakePveServer) -> str:
    return fakepve.url.rstrip("/").removesuffix("/api2/json")


@pytest.mark.parametrize(("status", "words"), [(200, "HTTP 200 OK"), (203, "HTTP 203")])
def test_health_names_an_html_page_instead_of_pve(
    fakepve: FakePveServer, provider: ProxmoxProvider, status: int, words: str
) -> None:
    fakepve.control("fail", method="GET", suffix="/version", status=status, message=PAGE,
                    html=True)
    health = provider.health()
    assert not health.ok, health.message
    assert health.message.startswith("read PVE version at https://"), health.message
    assert f"did not answer as PVE ({words}" in health.message
    assert "text/html" in health.message
    assert "page-canary" not in health.message


def test_a_listing_answered_by_a_page_is_an_error_not_an_empty_cluster(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner
) -> None:
    fakepve.control("fail", method="GET", suffix="/cluster/resources", status=200,
                    message=PAGE, html=True)
    with pytest.raises(Transient) as raised:
        provider.list_machines(owner)
    assert "did not answer as PVE" in str(raised.value)
    assert "page-canary" not in str(raised.value)


def test_a_failed_answer_that_is_a_page_keeps_its_status_without_the_body(
    fakepve: FakePveServer, provider: ProxmoxProvider
) -> None:
    fakepve.control("fail", method="GET", suffix="/version", status=400, message=PAGE,
                    html=True)
    health = provider.health()
    assert not health.ok
    assert "400" in health.message
    assert "page-canary" not in health.message

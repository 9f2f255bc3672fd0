"""An endpoint that answers, but not as vCenter (a web server's or proxy's page at
the url): health says so in words, never "unexpected Exception" (pyVmomi raises a
bare Exception, "is down or is not a VIM server") and never the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.providers.protocol import Runtime
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider
from tests.emulators.webpage import CANARY, web_page
from tests.unit.autoscaler.certs import localhost_server


@pytest.mark.parametrize("status", [200, 404, 503])
def test_health_names_a_page_instead_of_vcenter(tmp_path: Path, status: int) -> None:
    ca_file, cert, key = localhost_server(tmp_path, "webpage")
    with web_page(tls=(cert, key)) as served:
        served.page.status = status
        config = VSphereConfig(url=f"{served.url}/sdk", username="u",
                               password="pw-canary-0d9a", ca_file=str(ca_file), timeout=5)
        health = VSphereProvider("vc", config, Runtime(cache_dir=tmp_path)).health()
    assert not health.ok
    assert health.message.startswith(f"log in to vCenter as u at {served.url}: "), health
    assert "did not answer as vCenter" in health.message
    for unwanted in ("Exception", CANARY, "pw-canary"):
        assert unwanted not in health.message

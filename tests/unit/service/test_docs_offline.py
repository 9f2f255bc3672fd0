"""/docs works without the internet: every asset comes from the service itself."""

from __future__ import annotations

import re

from tests.unit.service.conftest import Api


def test_docs_page_references_no_external_host(idle_api: Api) -> None:
    page = idle_api.client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+", html, re.IGNORECASE), html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/docs/assets/")
        response = idle_api.client.get(asset)
        assert response.status_code == 200, asset
        assert response.content
    assert idle_api.client.get("/openapi.json").status_code == 200


def test_the_public_openapi_document_names_no_provider_instance(idle_api: Api) -> None:
    # /openapi.json needs no token, so it must not tell anyone which instances exist
    # (a scoped token's /v1/providers hides the others).
    document = idle_api.client.get("/openapi.json").text
    for instance in idle_api.ctx.handles:
        assert f'"{instance}"' not in document

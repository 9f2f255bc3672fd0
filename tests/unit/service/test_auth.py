"""Bearer tokens: 401 without a valid one, 403 outside its providers or access."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from talprov.errors import ConfigError
from talprov.providers.protocol import Runtime
from talprov.service.app import create_app
from talprov.service.auth import TokenVerifier
from talprov.service.config import Access, TokenConfig, parse_service_config
from talprov.store.store import Store
from tests.unit.service.conftest import OTHER, READ, WRITE, Api, auth, request_body


def test_missing_or_invalid_token_is_401(idle_api: Api) -> None:
    for headers in ({}, auth("wrong-token-0123456789abcdef"), {"Authorization": "Basic eDp5"}):
        for method, url in (("GET", "/v1/machine-requests"), ("GET", "/v1/providers"),
                            ("GET", "/metrics"), ("GET", "/v1/machine-request-sets")):
            response = idle_api.request(method, url, headers=headers)
            assert response.status_code == 401, (headers, url)
            assert response.headers["www-authenticate"] == "Bearer"
    response = idle_api.request("POST", "/v1/machine-requests", json=request_body("x-1"))
    assert response.status_code == 401


def test_healthz_needs_no_token(idle_api: Api) -> None:
    response = idle_api.request("GET", "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok"}


def test_read_token_cannot_write(idle_api: Api) -> None:
    response = idle_api.request("POST", "/v1/machine-requests", json=request_body("x-2"),
                                headers=READ)
    assert response.status_code == 403
    assert "read access" in response.json()["detail"]
    idle_api.request("POST", "/v1/machine-requests", json=request_body("x-2"), headers=WRITE)
    assert idle_api.request("DELETE", "/v1/machine-requests/x-2", headers=READ).status_code == 403
    forget = idle_api.request("POST", "/v1/machine-requests/x-2/forget",
                              json={"reason": "test"}, headers=READ)
    assert forget.status_code == 403
    assert idle_api.request("GET", "/v1/machine-requests/x-2", headers=READ).status_code == 200


def test_token_scoped_to_other_providers_is_403(idle_api: Api) -> None:
    idle_api.request("POST", "/v1/machine-requests", json=request_body("x-3"), headers=WRITE)
    # By id, another scope's request looks absent (404), so its existence does not
    # leak (tests/unit/service/test_scope_hiding.py); naming the provider is a 403.
    assert idle_api.request("GET", "/v1/machine-requests/x-3", headers=OTHER).status_code == 404
    assert idle_api.request("DELETE", "/v1/machine-requests/x-3",
                            headers=OTHER).status_code == 404
    create = idle_api.request("POST", "/v1/machine-requests", json=request_body("x-4"),
                              headers=OTHER)
    assert create.status_code == 403
    listing = idle_api.request("GET", "/v1/machine-requests", params={"provider": "fake"},
                               headers=OTHER)
    assert listing.status_code == 403
    # Without a provider filter the list just leaves out what the token may not see.
    unfiltered = idle_api.request("GET", "/v1/machine-requests", headers=OTHER)
    assert unfiltered.json() == {"items": [], "next": None}
    providers = idle_api.request("GET", "/v1/providers", headers=OTHER).json()
    assert providers == {"items": []}


def test_providers_lists_type_health_and_schema(idle_api: Api) -> None:
    body = idle_api.request("GET", "/v1/providers", headers=READ).json()
    (fake,) = body["items"]
    assert (fake["name"], fake["type"], fake["health"]["ok"]) == ("fake", "file", True)
    assert set(fake["provider_data_schema"]["properties"]) == {"size", "zone"}
    assert fake["provider_data_schema"]["additionalProperties"] is False


def test_sha256_tokens_and_constant_time_verifier() -> None:
    secret = "a-token-given-by-digest-only"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    verifier = TokenVerifier((
        TokenConfig(name="by-digest", sha256=digest, providers=("aws-dev",),
                    access=Access.READ),
        TokenConfig.model_validate({"name": "by-value", "value": "v" * 20, "access": "write"}),
    ))
    found = verifier.verify(secret)
    assert found is not None
    assert (found.name, found.providers, found.access) == ("by-digest", ("aws-dev",), "read")
    by_value = verifier.verify("v" * 20)
    assert by_value is not None
    assert by_value.name == "by-value"
    assert verifier.verify(secret + "x") is None
    assert verifier.verify("") is None
    assert secret not in repr(verifier)
    assert digest not in repr(verifier)


def test_service_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as both:
        parse_service_config({"tokens": [{"name": "t", "sha256": "0" * 64, "value": "x" * 20}]})
    assert both.value.where == "service.tokens[0]"
    with pytest.raises(ConfigError) as short:
        parse_service_config({"tokens": [{"name": "t", "value": "short-secret"}]})
    assert "short-secret" not in str(short.value)
    with pytest.raises(ConfigError) as access:
        parse_service_config({"tokens": [{"name": "t", "sha256": "0" * 64, "access": "admin"}]})
    assert access.value.where == "service.tokens[0].access"
    with pytest.raises(ConfigError) as listen:
        parse_service_config({"listen": "localhost"})
    assert listen.value.where == "service.listen"
    assert parse_service_config({"listen": "[::1]:9000"}).host_port() == ("::1", 9000)


def test_create_app_takes_the_raw_service_block(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    app = create_app(store, {}, Runtime(cache_dir=tmp_path),
                     {"tokens": [{"name": "t", "value": "x" * 20}], "workers": False})
    with TestClient(app) as client:
        assert client.get("/v1/providers", headers=auth("x" * 20)).json() == {"items": []}
    with pytest.raises(ConfigError) as bad:
        create_app(store, {}, Runtime(cache_dir=tmp_path), {"tokens": [{"name": "t"}]})
    assert bad.value.where == "service.tokens[0]"
    store.close()


def test_short_tokens_given_by_digest_are_refused() -> None:
    """Issue 14 item 7. Before: the docs' sample digest (sha256 of "test") loaded,
    and "test" then authenticated as a write token."""
    test_digest = hashlib.sha256(b"test").hexdigest()
    with pytest.raises(ConfigError) as weak:
        parse_service_config({"tokens": [{"name": "omni", "sha256": test_digest}]})
    assert "well-known short token" in str(weak.value)
    short = "abc123-only-15c"
    assert len(short) == 15
    verifier = TokenVerifier((TokenConfig(
        name="short", sha256=hashlib.sha256(short.encode()).hexdigest(), access=Access.WRITE),))
    assert verifier.verify(short) is None
    long_enough = short + "x"
    verifier = TokenVerifier((TokenConfig(
        name="ok", sha256=hashlib.sha256(long_enough.encode()).hexdigest()),))
    assert verifier.verify(long_enough) is not None


def test_the_docs_sample_token_is_not_a_working_token() -> None:
    text = (Path(__file__).parents[3] / "docs" / "service.md").read_text()
    for word in ("test", "password", "changeme", ""):
        assert hashlib.sha256(word.encode()).hexdigest() not in text

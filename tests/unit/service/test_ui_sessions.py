"""Status-page sessions: an opaque id in the cookie, kept hashed in the store, ended by
sign-out and by expiry; the API token never leaves the sign-in POST."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.helpers import Home
from tests.unit.service.conftest import WRITE_TOKEN, Api, open_api
from tests.unit.service.test_ui import csrf_of, sign_in

COOKIE = "talprov_session"


def _session_cookie(client: TestClient, token: str) -> str:
    response = client.post("/ui/sign-in", data={"csrf": csrf_of(client), "token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    header = next(v for v in response.headers.get_list("set-cookie")
                  if v.startswith(f"{COOKIE}="))
    return str(header.split(";", 1)[0].split("=", 1)[1]).strip('"')


def _stored_session_ids(api: Api) -> list[str]:
    engine = sa.create_engine(api.home.store_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT id_sha256 FROM ui_sessions")).scalars())
    finally:
        engine.dispose()


def test_the_cookie_holds_an_opaque_session_id_not_the_token(idle_api: Api) -> None:
    value = _session_cookie(idle_api.client, WRITE_TOKEN)
    assert WRITE_TOKEN not in value
    assert hashlib.sha256(WRITE_TOKEN.encode()).hexdigest() not in value
    assert len(value) >= 40
    # The store keeps only a digest of the id: a copy of the database signs nobody in.
    assert _stored_session_ids(idle_api) == [hashlib.sha256(value.encode()).hexdigest()]


def test_sign_out_revokes_the_session_everywhere(idle_api: Api) -> None:
    client = idle_api.client
    value = _session_cookie(client, WRITE_TOKEN)
    assert client.get("/ui", follow_redirects=False).status_code == 200
    out = client.post("/ui/sign-out", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303
    assert _stored_session_ids(idle_api) == []
    # A copy of the cookie kept elsewhere (another tab, a stolen copy) no longer works.
    stolen = TestClient(client.app, cookies={COOKIE: value})
    assert stolen.get("/ui", follow_redirects=False).status_code == 303
    assert stolen.get("/ui/changes").status_code == 401
    # And the token itself in the cookie, as before, signs nobody in.
    raw = TestClient(client.app, cookies={COOKIE: WRITE_TOKEN})
    assert raw.get("/ui", follow_redirects=False).status_code == 303


def test_a_session_ends_when_it_expires(idle_api: Api, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    from talprov.service.ui import session

    monkeypatch.setattr(session, "SESSION_LIFETIME", timedelta(seconds=-1))
    sign_in(idle_api.client, WRITE_TOKEN)
    assert idle_api.client.get("/ui", follow_redirects=False).status_code == 303
    # Signing in again clears expired sessions out of the store.
    monkeypatch.setattr(session, "SESSION_LIFETIME", timedelta(hours=1))
    sign_in(idle_api.client, WRITE_TOKEN)
    assert len(_stored_session_ids(idle_api)) == 1


def test_the_cookie_is_secure_over_https(idle_api: Api) -> None:
    client = TestClient(idle_api.client.app, base_url="https://testserver")
    response = client.post("/ui/sign-in", data={"csrf": csrf_of(client), "token": WRITE_TOKEN},
                           follow_redirects=False)
    header = next(v for v in response.headers.get_list("set-cookie")
                  if v.startswith(f"{COOKIE}="))
    flags = {part.strip().lower() for part in header.split(";")}
    assert {"secure", "httponly", "samesite=strict", "path=/ui"} <= flags


def test_a_session_ends_with_its_token() -> None:
    from pydantic import SecretStr

    from talprov.service.auth import TokenVerifier
    from talprov.service.config import Access, TokenConfig

    def verifier(value: str, name: str = "ops") -> TokenVerifier:
        return TokenVerifier((TokenConfig(name=name, value=SecretStr(value), providers=["*"],
                                          access=Access.WRITE),))

    old = "old-token-0123456789abcdef"
    binding = verifier(old).session_binding(old)
    assert binding is not None
    principal, check = binding
    assert old not in check
    assert hashlib.sha256(old.encode()).hexdigest() != check
    assert verifier(old).session_principal("ops", check) == principal
    assert verifier("new-token-0123456789abcdef").session_principal("ops", check) is None
    assert verifier(old, name="renamed").session_principal("ops", check) is None
    assert verifier(old).session_binding("not-a-token-0123456789") is None


def test_behind_a_tls_proxy_the_cookies_are_secure(home: Home) -> None:
    # insecure_http says a TLS-terminating proxy is in front: the browser speaks
    # HTTPS, so the cookies must never travel in clear text elsewhere.
    for api in open_api(home, workers=False, insecure_http=True):
        response = api.client.post("/ui/sign-in", data={"csrf": csrf_of(api.client),
                                                         "token": WRITE_TOKEN},
                                   follow_redirects=False)
        for header in response.headers.get_list("set-cookie"):
            assert "secure" in {part.strip().lower() for part in header.split(";")}, header

"""The vAPI REST session: one login, one re-login on 401, errors mapped, secrets kept out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from talprov.providers.errors import AuthError, InvalidRequest, NotFound, Transient
from talprov.providers.protocol import Runtime
from talprov.vmware.client import ssl_context
from talprov.vmware.config import VSphereConfig
from talprov.vmware.provider import VSphereProvider
from talprov.vmware.vapi import SESSION_HEADER, SESSION_PATH, VapiClient
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import vsphere_config
from tests.unit.vmware.vapi_admin import vapi_admin

PASSWORD = "s3cret-Pa55word"
SESSION = "0f0e0d0c-session-id-never-logged"

Handler = Callable[[httpx.Request], httpx.Response]


def _config() -> VSphereConfig:
    return VSphereConfig.model_validate({"url": "https://vcenter.test/sdk",
                                         "username": "talprov@vsphere.local",
                                         "password": PASSWORD})


def _client(handler: Handler) -> VapiClient:
    config = _config()
    return VapiClient(config, ssl_context(config), transport=httpx.MockTransport(handler))


class Recorded:
    """A vCenter stand-in answering from a script; counts logins."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self.answers = answers
        self.logins = 0
        self.sessions_used: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest" + SESSION_PATH and request.method == "POST":
            self.logins += 1
            assert request.headers["authorization"].startswith("Basic ")
            return httpx.Response(200, json={"value": f"{SESSION}-{self.logins}"})
        self.sessions_used.append(request.headers.get(SESSION_HEADER, ""))
        return self.answers.pop(0)


def test_one_login_for_many_calls_and_one_relogin_on_401() -> None:
    server = Recorded([httpx.Response(200, json={"value": ["a"]}),
                       httpx.Response(200, json={"value": ["b"]}),
                       httpx.Response(401),
                       httpx.Response(200, json={"value": ["c"]})])
    client = _client(server)
    assert client.call("list", "GET", "/x") == ["a"]
    assert client.call("list", "GET", "/x") == ["b"]
    assert server.logins == 1
    assert client.call("list", "GET", "/x") == ["c"]  # 401, log in again, repeat
    assert server.logins == 2
    assert server.sessions_used == [f"{SESSION}-1"] * 3 + [f"{SESSION}-2"]


def test_a_second_401_is_an_auth_error_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(Recorded([httpx.Response(401), httpx.Response(401)]))
    with pytest.raises(AuthError) as caught:
        client.call("list tags", "GET", "/x")
    shown = f"{caught.value} {caught.value!r} {client!r} " + caplog.text
    assert "401" in str(caught.value)
    assert PASSWORD not in shown
    assert SESSION not in shown


def test_a_refused_login_is_an_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401)

    with pytest.raises(AuthError, match=r"log in to vCenter REST as talprov@vsphere\.local"):
        _client(handler).call("list", "GET", "/x")


@pytest.mark.parametrize(("answer", "error"), [
    (httpx.Response(403, json={"type": "com.vmware.vapi.std.errors.unauthorized"}), AuthError),
    (httpx.Response(404), NotFound),
    (httpx.Response(400, json={"type": "com.vmware.vapi.std.errors.invalid_argument",
                               "value": {"messages": [{"default_message": PASSWORD}]}}),
     InvalidRequest),
    (httpx.Response(500, text="boom"), Transient),
    (httpx.Response(503), Transient),
    (httpx.Response(200, text="<html>"), Transient),
])
def test_answers_are_mapped_to_talprov_errors(answer: httpx.Response,
                                              error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        _client(Recorded([answer])).call("read tag", "GET", "/x")
    # An error answer names the endpoint (scheme://host:port) it came from.
    where = " at https://vcenter.test:443" if answer.status_code >= 300 else ""
    assert str(caught.value).startswith(f"read tag{where}: ")
    assert PASSWORD not in str(caught.value)  # the body's messages are not quoted


def test_an_unreachable_vcenter_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Transient, match="unreachable"):
        _client(handler).call("read tag", "GET", "/x")


def test_vcsim_session_ended_out_of_band_is_renewed_once(
    vcsim: VcsimServer, runtime: Runtime,
) -> None:
    config = vsphere_config(vcsim)
    used: list[str] = []
    context = ssl_context(config)
    network = httpx.HTTPTransport(verify=context)

    def recording(request: httpx.Request) -> httpx.Response:
        used.append(request.headers.get(SESSION_HEADER, ""))
        return network.handle_request(request)

    vapi = VapiClient(config, context, transport=httpx.MockTransport(recording))
    provider = VSphereProvider("lab", config, runtime, vapi=vapi)
    try:
        with vapi_admin(vcsim) as admin:
            prod = admin.tag(admin.category("env"), "prod")
            assert provider.tagger.resolve(["env:prod"]) == [prod]
            first = next(s for s in used if s)
            admin.http.request("DELETE", "/com/vmware/cis/session",
                               headers={SESSION_HEADER: first}).raise_for_status()
        provider.tagger.forget()
        assert provider.tagger.resolve(["env:prod"]) == [prod]
        sessions = [s for s in dict.fromkeys(used) if s]
        assert len(sessions) == 2  # the ended one, then exactly one new login
    finally:
        provider.close()
        network.close()


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request"), (405, ""), (409, ""),
                                              (422, "invalid_argument")])
def test_an_unlisted_4xx_is_a_permanent_error_naming_the_call_and_status(
    status: int, kind: str
) -> None:
    body = {"type": f"com.vmware.vapi.std.errors.{kind}"} if kind else {}
    client = _client(Recorded([httpx.Response(status, json=body)]))
    with pytest.raises(InvalidRequest, match=f"^attach tags at https://vcenter.test:443: "
                                              f"vCenter REST answered {status}"):
        client.call("attach tags", "POST", "/x")


@pytest.mark.parametrize("status", [408, 425, 429, 503])
def test_timeout_too_early_and_too_many_requests_stay_transient(status: int) -> None:
    client = _client(Recorded([httpx.Response(status)]))
    with pytest.raises(Transient, match=f"answered {status}"):
        client.call("attach tags", "POST", "/x")

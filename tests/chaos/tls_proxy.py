"""The fault proxy over HTTPS, for emulators whose drivers speak HTTPS only (PVE, vCenter).

The proxy terminates TLS with a certificate of its own for 127.0.0.1 (made with
fakepve's ``make_cert``, written to ``cert_dir``; the driver trusts it through
its ``ca_file``) and calls the backend over HTTPS, trusting the backend's
certificate. It keeps no cookies of its own: every client's session cookie
(PVE's ticket, vCenter's ``vmware_soap_session``) travels in that client's
headers only, so a killed worker's session never leaks into a new worker's calls.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx

from tests.chaos.proxy import Dialect, FaultProxy
from tests.unit.autoscaler.certs import localhost_server

PVE = Dialect(
    # pveproxy's answers: a status line with the reason, {"data": null} and a message.
    error=(500, "application/json",
           b'{"data": null, "message": "injected by the chaos proxy\\n"}'),
    throttle=(503, "application/json",
              b'{"data": null, "message": "too many requests (chaos proxy)\\n"}'),
)
VSPHERE = Dialect(
    # vCenter's SOAP fault (HTTP 500) with a SystemError, which pyVmomi raises as
    # vim.fault.SystemError; a busy vCenter answers 503 without a SOAP body.
    error=(500, "text/xml; charset=utf-8",
           b'<?xml version="1.0" encoding="UTF-8"?>'
           b'<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" '
           b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
           b'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
           b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
           b"<soapenv:Fault><faultcode>ServerFaultCode</faultcode>"
           b"<faultstring>injected by the chaos proxy</faultstring><detail>"
           b'<SystemErrorFault xmlns="urn:vim25" xsi:type="SystemError">'
           b"<reason>injected by the chaos proxy</reason></SystemErrorFault>"
           b"</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"),
    throttle=(503, "text/plain", b"Service Unavailable (chaos proxy)"),
)


@dataclass
class TlsFaultProxy(FaultProxy):
    """:class:`FaultProxy` with HTTPS on both sides; ``cert_file`` is what clients trust."""

    cert_dir: Path = field(default_factory=Path)
    backend_ca: Path | None = None
    cert_file: Path = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        # Not fakepve's helper: importing fakepve here would put it in the test
        # process, which test_fakepve_code_stays_out_of_the_test_process forbids.
        self.cert_file, certfile, keyfile = localhost_server(self.cert_dir, "chaos-proxy")
        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_side.load_cert_chain(certfile, keyfile)
        self._server.socket = server_side.wrap_socket(self._server.socket, server_side=True)
        self._client.close()
        verify = ssl.create_default_context(cafile=str(self.backend_ca)) \
            if self.backend_ca else True
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._client = httpx.Client(base_url=self.backend, timeout=60, verify=verify,
                                    cookies=no_cookies)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

"""The real Keystone in front of the fake Nova/Glance/Neutron, so identity is the real thing.

``RealKeystone(python)`` starts ``keystone_server.py`` with a Python that has the
PyPI ``keystone`` package (a separate virtualenv: Keystone's dependency set is
large and should not share talprov's). ``connect(fake)`` then creates a project,
a member user and the compute/image/network endpoints pointing at ``fake``, and
makes ``fake`` validate tokens against Keystone (``GET /v3/auth/tokens``) instead
of its own token table. ``TALPROV_KEYSTONE_PYTHON`` names such a Python
(``scripts/test.sh`` builds ``.venv-keystone`` and sets it).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx

from talprov.processes import stop_process
from talprov.testing.openstack.cloud import FakeOpenStack
from talprov.testing.openstack.keystone import unauthorized
from talprov.testing.openstack.state import Token

SERVER_SCRIPT = Path(__file__).with_name("keystone_server.py")
ENV_PYTHON = "TALPROV_KEYSTONE_PYTHON"


def keystone_python() -> str | None:
    """The Python with Keystone installed, from the environment, if usable."""
    python = os.environ.get(ENV_PYTHON)
    if python and os.access(python, os.X_OK):
        return python
    return None


class RealKeystone:
    """A Keystone process on 127.0.0.1 with SQLite and fernet tokens."""

    def __init__(self, python: str, workdir: Path) -> None:
        self.python = python
        self.workdir = workdir
        self.admin_password = secrets.token_urlsafe(16)
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self.http = httpx.Client(timeout=30)

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    def start(self, timeout: float = 120) -> RealKeystone:
        """Set Keystone up and serve it; raises RuntimeError if it does not come up."""
        process = subprocess.Popen(
            # -P: the script's directory must not shadow the real keystone package.
            [self.python, "-P", str(SERVER_SCRIPT), str(self.workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(self.admin_password + "\n")
        process.stdin.close()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            line = ""
            for line in process.stdout:
                if line.startswith("READY "):
                    break
        finally:
            timer.cancel()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError("keystone did not start (see keystone.log in the work dir)")
        self.url = line.split()[1]
        return self

    def stop(self) -> None:
        stop_process(self._process, timeout=10)
        self.http.close()

    def token(self, user: str, password: str, project: str) -> str:
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        reply = self.http.post(f"{self.auth_url}/auth/tokens", json=body)
        reply.raise_for_status()
        return str(reply.headers["X-Subject-Token"])

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        token = self.token("admin", self.admin_password, "admin")
        reply = self.http.request(method, f"{self.auth_url}{path}", json=body,
                                  headers={"X-Auth-Token": token})
        reply.raise_for_status()
        return reply.json() if reply.content else None

    def connect(self, fake: FakeOpenStack, *, project: str = "talos",
                user: str = "demo") -> dict[str, str]:
        """Put ``fake``'s services in Keystone's catalog and a member user in a project.

        Returns a clouds.yaml-style password auth block for that user.
        """
        password = secrets.token_urlsafe(12)
        project_id = self._admin("POST", "/projects", {"project": {
            "name": project, "domain_id": "default"}})["project"]["id"]
        user_id = self._admin("POST", "/users", {"user": {
            "name": user, "domain_id": "default", "password": password}})["user"]["id"]
        roles = self._admin("GET", "/roles?name=member")["roles"]
        self._admin("PUT", f"/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}")
        for service_type, path in (("compute", "/compute/v2.1"), ("image", "/image"),
                                   ("network", "/network")):
            service_id = self._admin("POST", "/services", {"service": {
                "type": service_type, "name": f"fake-{service_type}"}})["service"]["id"]
            self._admin("POST", "/endpoints", {"endpoint": {
                "service_id": service_id, "interface": "public", "region_id": "RegionOne",
                "url": fake.url + path}})
        fake.use_identity(self._validator(fake))
        return {"auth_url": self.auth_url, "username": user, "password": password,
                "project_name": project, "user_domain_name": "Default",
                "project_domain_name": "Default"}

    def application_credential(self, auth: dict[str, str]) -> tuple[str, str]:
        """Create an application credential for the user of ``auth``: (id, secret)."""
        token = self.token(auth["username"], auth["password"], auth["project_name"])
        me = self.http.get(f"{self.auth_url}/auth/tokens",
                           headers={"X-Auth-Token": token, "X-Subject-Token": token})
        me.raise_for_status()
        user_id = me.json()["token"]["user"]["id"]
        reply = self.http.post(f"{self.auth_url}/users/{user_id}/application_credentials",
                               json={"application_credential": {"name": "talprov-test"}},
                               headers={"X-Auth-Token": token})
        reply.raise_for_status()
        cred = reply.json()["application_credential"]
        return str(cred["id"]), str(cred["secret"])

    def _validator(self, fake: FakeOpenStack) -> Any:
        service_token = {"value": ""}

        def validate(subject: str) -> Token:
            # Like keystonemiddleware: a service token asks Keystone about the caller's.
            if not service_token["value"]:
                service_token["value"] = self.token("admin", self.admin_password, "admin")
            reply = self.http.get(f"{self.auth_url}/auth/tokens?nocatalog", headers={
                "X-Auth-Token": service_token["value"], "X-Subject-Token": subject})
            if reply.status_code != 200:
                raise unauthorized()
            body = reply.json()["token"]
            return Token(id=subject, user_id=body["user"]["id"],
                         project_id=body["project"]["id"], methods=body["methods"],
                         expires_at=body["expires_at"], issued_at=body["issued_at"])

        return validate

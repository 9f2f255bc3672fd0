"""Identity v3: version discovery and ``POST /v3/auth/tokens`` (password, application credential).

The token id travels in the ``X-Subject-Token`` header, the body carries the
user, project, roles and the service catalog, as the Identity API reference
describes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from talprov.testing.openstack.state import ServiceApi, Token, User, new_hex_id
from talprov.testing.openstack.wire import HttpError, Request, Response, Router

IDENTITY_VERSION = "v3.14"
DOMAIN_NAMES = {"default": "Default"}


def unauthorized(message: str = "The request you have made requires authentication.") -> HttpError:
    return HttpError(
        401,
        {"error": {"code": 401, "title": "Unauthorized", "message": message}},
        headers={"WWW-Authenticate": "Keystone uri=\"identity\""},
    )


def _bad_request(message: str) -> HttpError:
    return HttpError(400, {"error": {"code": 400, "title": "Bad Request", "message": message}})


class KeystoneApi(ServiceApi):
    """Routes under ``/identity``."""

    def register(self, router: Router) -> None:
        router.add("GET", "/identity", self.versions)
        router.add("GET", "/identity/v3", self.version)
        router.add("POST", "/identity/v3/auth/tokens", self.issue_token)
        router.add("GET", "/identity/v3/auth/tokens", self.validate_token)
        router.add("DELETE", "/identity/v3/auth/tokens", self.revoke_token)

    def _version_doc(self, base: str) -> dict[str, Any]:
        return {
            "id": IDENTITY_VERSION,
            "status": "stable",
            "updated": "2019-01-22T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def versions(self, req: Request) -> Response:
        return Response(300, {"versions": {"values": [self._version_doc(req.base_url)]}})

    def version(self, req: Request) -> Response:
        return Response(200, {"version": self._version_doc(req.base_url)})

    # -- authentication ----------------------------------------------------------

    def _find_user(self, spec: dict[str, Any]) -> User | None:
        if "id" in spec:
            return next((u for u in self.state.users.values() if u.id == spec["id"]), None)
        domain = spec.get("domain") or {}
        domain_id = domain.get("id")
        if domain_id is None and "name" in domain:
            domain_id = next(
                (k for k, v in DOMAIN_NAMES.items() if v == domain["name"]), domain["name"]
            )
        user = self.state.users.get(spec.get("name", ""))
        if user is None or user.domain_id != domain_id:
            return None
        return user

    def _scoped_project(self, scope: Any) -> str:
        if not isinstance(scope, dict) or "project" not in scope:
            # Unscoped tokens carry no catalog; every client of this fake scopes.
            raise unauthorized("The request requires a project-scoped token.")
        project = scope["project"]
        if project.get("id") == self.state.project_id:
            return self.state.project_id
        domain = project.get("domain") or {}
        domain_ok = domain.get("id") == self.state.domain_id or domain.get(
            "name"
        ) == DOMAIN_NAMES.get(self.state.domain_id)
        if project.get("name") == self.state.project_name and domain_ok:
            return self.state.project_id
        raise unauthorized(f"Could not find project: {project.get('name') or project.get('id')}.")

    def issue_token(self, req: Request) -> Response:
        body = req.json()
        try:
            identity = body["auth"]["identity"]
            methods = list(identity["methods"])
        except (KeyError, TypeError) as exc:
            raise _bad_request("Expecting to find identity in auth.") from exc
        scope = body["auth"].get("scope")
        app_cred_id = None
        if methods == ["password"]:
            spec = identity.get("password", {}).get("user", {})
            user = self._find_user(spec)
            if user is None or spec.get("password") != user.password:
                raise unauthorized()
            project_id = self._scoped_project(scope)
        elif methods == ["application_credential"]:
            spec = identity.get("application_credential", {})
            cred = self._find_app_cred(spec)
            if cred is None or spec.get("secret") != cred.secret:
                raise unauthorized()
            if scope:
                raise unauthorized("Application credentials cannot request a scope.")
            user = next(u for u in self.state.users.values() if u.id == cred.user_id)
            project_id, app_cred_id = cred.project_id, cred.id
        else:
            raise unauthorized(f"Unsupported authentication methods: {methods}")
        issued = datetime.now(UTC)
        token = Token(
            id="gAAAAA" + new_hex_id() + new_hex_id(),
            user_id=user.id,
            project_id=project_id,
            methods=methods,
            issued_at=issued.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            expires_at=(issued + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            app_cred_id=app_cred_id,
        )
        self.state.tokens[token.id] = token
        return Response(
            201,
            {"token": self._token_body(token, user, req.base_url)},
            headers={"X-Subject-Token": token.id},
        )

    def _find_app_cred(self, spec: dict[str, Any]) -> Any:
        if "id" in spec:
            return self.state.app_credentials.get(spec["id"])
        user = self._find_user(spec.get("user") or {})
        for cred in self.state.app_credentials.values():
            if user is not None and cred.name == spec.get("name") and cred.user_id == user.id:
                return cred
        return None

    def _token_body(self, token: Token, user: User, base: str) -> dict[str, Any]:
        domain = {"id": self.state.domain_id, "name": DOMAIN_NAMES.get(self.state.domain_id)}
        body: dict[str, Any] = {
            "methods": token.methods,
            "user": {"id": user.id, "name": user.name, "domain": domain,
                     "password_expires_at": None},
            "audit_ids": [new_hex_id()[:22]],
            "expires_at": token.expires_at,
            "issued_at": token.issued_at,
            "project": {"id": self.state.project_id, "name": self.state.project_name,
                        "domain": domain},
            "is_domain": False,
            "roles": [{"id": "r-member", "name": "member"}, {"id": "r-reader", "name": "reader"}],
            "catalog": self._catalog(base),
        }
        if token.app_cred_id is not None:
            cred = self.state.app_credentials[token.app_cred_id]
            body["application_credential"] = {"id": cred.id, "name": cred.name,
                                              "restricted": True}
        return body

    def _catalog(self, base: str) -> list[dict[str, Any]]:
        services = [
            ("identity", "keystone", f"{base}/identity"),
            ("compute", "nova", f"{base}/compute/v2.1"),
            ("image", "glance", f"{base}/image"),
            ("network", "neutron", f"{base}/network"),
        ]
        return [
            {
                "id": new_hex_id(),
                "type": service_type,
                "name": name,
                "endpoints": [
                    {
                        "id": new_hex_id(),
                        "interface": "public",
                        "region": self.state.region,
                        "region_id": self.state.region,
                        "url": url,
                    }
                ],
            }
            for service_type, name, url in services
        ]

    def authenticate(self, req: Request) -> Token:
        """The token named by ``X-Auth-Token``; raises 401 when missing or revoked."""
        token = self.state.tokens.get(req.header("x-auth-token"))
        if token is None:
            raise unauthorized()
        return token

    def validate_token(self, req: Request) -> Response:
        self.authenticate(req)
        subject = self.state.tokens.get(req.header("x-subject-token"))
        if subject is None:
            raise HttpError(404, {"error": {"code": 404, "title": "Not Found",
                                            "message": "Could not find token."}})
        user = next(u for u in self.state.users.values() if u.id == subject.user_id)
        return Response(
            200,
            {"token": self._token_body(subject, user, req.base_url)},
            headers={"X-Subject-Token": subject.id},
        )

    def revoke_token(self, req: Request) -> Response:
        self.authenticate(req)
        if self.state.tokens.pop(req.header("x-subject-token"), None) is None:
            raise HttpError(404, {"error": {"code": 404, "title": "Not Found",
                                            "message": "Could not find token."}})
        return Response(204)


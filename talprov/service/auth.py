"""Bearer-token authentication and per-provider, read/write authorisation.

Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest` against
every configured token (no early exit), so neither the token text nor which
token matched leaks through timing. Missing or unknown token → 401; a known
token used outside its providers or for a write with read access → 403.

The API's routers use :class:`TokenRoute`, which checks the token and, for a
write method, the write access before FastAPI reads the body: a caller that may
not write gets 403 whatever it sent, never a 400/415/422 about a body it may
not send (which would also teach it how the route parses one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from talprov.service.config import MIN_TOKEN_LENGTH, Access, TokenConfig

log = logging.getLogger(__name__)

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A token from the `service.tokens` list of talprov.yaml.",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a configured token's name, scope and access."""

    name: str
    providers: tuple[str, ...]
    access: Access

    def allows_provider(self, provider: str) -> bool:
        return "*" in self.providers or provider in self.providers

    @property
    def all_providers(self) -> bool:
        return "*" in self.providers

    def require_provider(self, provider: str) -> None:
        """Raise 403 unless this token may touch ``provider``. The answer does not
        repeat ``provider``: it is what the caller sent, and bodies never echo input."""
        if not self.allows_provider(provider):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"token {self.name!r} is not allowed to use the provider instance "
                       "named in this call",
            )

    def require_write(self) -> None:
        """Raise 403 unless this token has write access."""
        if self.access is not Access.WRITE:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"token {self.name!r} has read access only"
            )


class TokenVerifier:
    """Knows the configured tokens only as digests."""

    def __init__(self, tokens: tuple[TokenConfig, ...]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for token in tokens:
            self._entries.append((bytes.fromhex(token.digest_hex()),
                                  Principal(token.name, tuple(token.providers), token.access)))

    def __repr__(self) -> str:
        return f"TokenVerifier({len(self._entries)} tokens)"

    def verify(self, presented: str) -> Principal | None:
        """The principal whose token is ``presented``, or None. Never raises.

        A token shorter than ``MIN_TOKEN_LENGTH`` is refused even when its digest
        is configured: a digest hides the length, so this is where the minimum
        applies to tokens given as ``sha256``.
        """
        found = self._match(presented)
        return None if found is None else found[1]

    def session_binding(self, presented: str) -> tuple[Principal, str] | None:
        """The principal of ``presented`` and a check digest tied to the token's value,
        to keep with a session instead of the token; None for an invalid token.
        Never raises."""
        found = self._match(presented)
        return None if found is None else (found[1], _session_check(found[0]))

    def session_principal(self, name: str, check: str) -> Principal | None:
        """The principal of the configured token named ``name`` whose value gave
        ``check`` (:meth:`session_binding`); None when that token was removed or
        changed since. Constant time over the tokens; never raises."""
        found: Principal | None = None
        for expected, principal in self._entries:
            same = hmac.compare_digest(_session_check(expected).encode(), check.encode())
            if same and principal.name == name and found is None:
                found = principal
        return found

    def _match(self, presented: str) -> tuple[bytes, Principal] | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: tuple[bytes, Principal] | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = (expected, principal)
        if found is not None and len(presented) < MIN_TOKEN_LENGTH:
            log.warning("token %r is shorter than %d characters: refused; configure a longer "
                        "one", found[1].name, MIN_TOKEN_LENGTH)
            return None
        return found


def _session_check(token_digest: bytes) -> str:
    """A digest that names a token's value without being usable as its digest."""
    return hashlib.sha256(b"talprov-ui-session\0" + token_digest).hexdigest()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller's principal; raises 401 for a missing, malformed or unknown token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        # HTTPBearer gives None for another scheme too: tell that apart from nothing.
        raise _unauthorized("the Authorization header is not a bearer token"
                            if request.headers.get("authorization") else "missing bearer token")
    verifier: TokenVerifier = request.app.state.ctx.tokens
    principal = verifier.verify(credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid token")
    request.state.principal_name = principal.name
    return principal


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the authenticated caller (401 otherwise); the one a
    :class:`TokenRoute` found already, when there is one. On a write method it
    also raises 403 for a read token: a write route outside a TokenRoute router
    is then still closed to read tokens, only after its body is read."""
    checked = getattr(request.state, "principal", None)
    principal = (checked if isinstance(checked, Principal)
                 else authenticate(request, credentials))
    if request.method in WRITE_METHODS:
        principal.require_write()
    return principal


#: Methods that change something: they need a token with write access.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TokenRoute(APIRoute):
    """A route that authenticates the caller before its body, path or query is read:
    401 for a missing or unknown token, 403 for a read token on a write method
    (:data:`WRITE_METHODS`), whatever the body. Use it as a router's
    ``route_class``; the endpoint still takes :data:`PrincipalDep` for the scope
    checks that need the body (which provider)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        writes = bool((self.methods or set()) & WRITE_METHODS)

        async def authorised_first(request: Request) -> Response:
            principal = authenticate(request, await bearer_scheme(request))
            if writes:
                principal.require_write()
            request.state.principal = principal
            return await handler(request)

        return authorised_first


PrincipalDep = Annotated[Principal, Depends(current_principal)]

"""Signing in to the status page: the API's tokens, exchanged for a server-side session.

The token a person pastes into the sign-in form is checked once and never kept:
the ``talprov_session`` cookie gets a random session id (256 bits), and the
store keeps only that id's SHA-256 with the token's name, a digest tied to the
token's value and an expiry (:data:`SESSION_LIFETIME`). Signing out deletes the
session, so a copy of the cookie stops working at once, on every replica
sharing the store; so does removing or changing the token in the config. The
cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
makes the browser send it), Path=/ui, and Secure when the page came over HTTPS
or the service sits behind a TLS-terminating proxy (``insecure_http``).
Neither the token nor the session id ever appears in a URL.

The only writes are signing in and out; both are POSTs carrying a CSRF token
that must equal the ``talprov_csrf`` cookie (double submit: another site can
neither read that cookie nor set it, SameSite=Strict aside), and a POST whose
``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, Request, status
from fastapi.responses import Response

from talprov.service.auth import Principal, TokenVerifier
from talprov.store.store import Store

SESSION_COOKIE = "talprov_session"
CSRF_COOKIE = "talprov_csrf"
COOKIE_PATH = "/ui"
#: A sign-in form body is two short fields; anything longer is not one.
MAX_FORM_BYTES = 8192
#: How long a session lasts after sign-in, whatever the browser does with its cookie.
SESSION_LIFETIME = timedelta(hours=12)
#: Session ids are ``secrets.token_urlsafe(32)``: 43 URL-safe characters.
_SESSION_ID_LENGTH = 43


def _id_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _session_id(request: Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    if len(value) != _SESSION_ID_LENGTH or not value.replace("-", "").replace("_", "").isalnum():
        return None
    return value


def session_principal(request: Request) -> Principal | None:
    """The principal of the live session in the cookie, or None (no cookie, unknown,
    signed out or expired session, or its token removed or changed since).
    Raises ``StoreError`` when the store cannot be read."""
    session_id = _session_id(request)
    if session_id is None:
        return None
    store: Store = request.app.state.ctx.store
    found = store.ui_session(_id_digest(session_id))
    if found is None:
        return None
    verifier: TokenVerifier = request.app.state.ctx.tokens
    principal = verifier.session_principal(found.token_name, found.token_check)
    if principal is not None:
        request.state.principal_name = principal.name
    return principal


def open_session(request: Request, response: Response, token: str) -> bool:
    """Check ``token`` and, when valid, open a session and set its cookie on
    ``response``. False for an invalid token (nothing stored). Raises ``StoreError``."""
    verifier: TokenVerifier = request.app.state.ctx.tokens
    binding = verifier.session_binding(token)
    if binding is None:
        return False
    principal, check = binding
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    store: Store = request.app.state.ctx.store
    store.open_ui_session(_id_digest(session_id), token_name=principal.name, token_check=check,
                          expires_at=now + SESSION_LIFETIME, now=now)
    # A session cookie (no Max-Age): it ends with the browser session, or at the
    # server-side expiry, whichever comes first.
    response.set_cookie(SESSION_COOKIE, session_id, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))
    return True


def end_session(request: Request, response: Response) -> None:
    """Delete the cookie's session from the store (idempotent) and clear the cookie.
    Raises ``StoreError``."""
    session_id = _session_id(request)
    if session_id is not None:
        store: Store = request.app.state.ctx.store
        store.end_ui_session(_id_digest(session_id))
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=_secure(request))


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: the cookie's, or a new one to set."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    return secrets.token_urlsafe(32)


def _secure(request: Request) -> bool:
    # insecure_http means a TLS-terminating proxy is in front: the browser speaks
    # HTTPS to it even though this request arrived as plain HTTP.
    return request.url.scheme == "https" or bool(request.app.state.ctx.config.insecure_http)


def set_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


async def checked_form(request: Request) -> dict[str, str]:
    """The fields of a sign-in/out POST after its CSRF and origin checks.

    Raises HTTPException 403 when the CSRF token is missing or wrong or the
    ``Origin`` is another site's, 413 for an oversized body, 415 for a body that
    is not a urlencoded form. Reads the body once.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail="expected a form")
    origin = request.headers.get("origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-site form refused")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="form too large")
    fields = {key: values[0] for key, values in
              parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    expected = request.cookies.get(CSRF_COOKIE, "")
    presented = fields.get("csrf", "")
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="the form expired; reload the page and try again")
    return fields

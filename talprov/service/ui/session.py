"""Signing in to the status page: the API's tokens, kept in a cookie.

The token a person pastes into the sign-in form goes into the ``talprov_session``
cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
makes the browser send it), Path=/ui, and Secure when the page came over HTTPS.
It never appears in a URL. Every request re-checks it with the API's
:class:`~talprov.service.auth.TokenVerifier`, so a token removed from the
config stops working at once and the page sees exactly the token's scope.

The only writes are signing in and out; both are POSTs carrying a CSRF token
that must equal the ``talprov_csrf`` cookie (double submit: another site can
neither read that cookie nor set it, SameSite=Strict aside), and a POST whose
``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, Request, status
from fastapi.responses import Response

from talprov.service.auth import Principal, TokenVerifier

SESSION_COOKIE = "talprov_session"
CSRF_COOKIE = "talprov_csrf"
COOKIE_PATH = "/ui"
#: A sign-in form body is two short fields; anything longer is not one.
MAX_FORM_BYTES = 8192


def session_principal(request: Request) -> Principal | None:
    """The principal whose token is in the session cookie, or None. Never raises."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    verifier: TokenVerifier = request.app.state.ctx.tokens
    principal = verifier.verify(token)
    if principal is not None:
        request.state.principal_name = principal.name
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: the cookie's, or a new one to set."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    return secrets.token_urlsafe(32)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    # A session cookie (no Max-Age): it ends with the browser session.
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


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

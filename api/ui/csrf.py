"""CSRF protection of the web UI: a token bound to the session, on every form and htmx call.

The token is an HMAC of a fixed label under the session id, so it needs no storage, differs
per session and reveals nothing about the cookie. Forms carry it in a hidden ``csrf_token``
field; htmx sends it as the ``X-CSRF-Token`` header (``hx-headers`` on ``<body>``). The
sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
SIGN_IN_COOKIE = "cairn_sign_in_csrf"


class CsrfRefused(Exception):
    """The request carried no token, or not this session's."""


def token_for(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"cairn-ui-csrf", hashlib.sha256).hexdigest()


async def _sent(request: Request) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def verify(request: Request, expected: str) -> None:
    if not hmac.compare_digest((await _sent(request)).encode(), expected.encode()):
        raise CsrfRefused


def sign_in_token(request: Request) -> str:
    """The sign-in form's token: the pre-session cookie's value, or a new one."""
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)


def set_sign_in_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def verify_sign_in(request: Request) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE)
    if not cookie:
        raise CsrfRefused
    await verify(request, cookie)

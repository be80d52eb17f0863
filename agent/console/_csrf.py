"""CSRF protection: a synchronizer token kept in the (signed) session.

Every form carries the token in a hidden ``csrf_token`` field; every POST that relies on
the session cookie must send it back, compared in constant time, or gets 403. Requests
authenticated with a bearer token carry no ambient credentials and need none.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

__all__ = ["CSRF_FIELD", "MAX_FIELDS", "CsrfRejected", "csrf_token", "rotate_csrf_token", "verified_form"]

CSRF_FIELD = "csrf_token"
_SESSION_KEY = "csrf"
MAX_FIELDS = 32


class CsrfRejected(HTTPException):
    """A POST without this session's CSRF token (403)."""

    def __init__(self) -> None:
        super().__init__(403, "The form has expired or did not come from this console. Reload the page and try again.")


def csrf_token(request: Request) -> str:
    """This session's token, created on first use."""
    token = request.session.get(_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[_SESSION_KEY] = token
    return token


def rotate_csrf_token(request: Request) -> str:
    """A fresh token (at login, so a token seen before login is worthless after it)."""
    request.session[_SESSION_KEY] = secrets.token_urlsafe(32)
    return request.session[_SESSION_KEY]


async def verified_form(request: Request, *, check_token: bool = True) -> FormData:
    """The POSTed form, after checking its CSRF token; 403 when it is missing or wrong."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    if check_token:
        expected = request.session.get(_SESSION_KEY)
        sent = form.get(CSRF_FIELD)
        if not isinstance(expected, str) or not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise CsrfRejected
    return form

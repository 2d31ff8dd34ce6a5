"""Who a console request comes from, whether its form is genuine, and the headers every answer carries.

Signed in by password: the ``mailgate_session`` cookie (``Secure``, ``HttpOnly``,
``SameSite=Strict``) names a ``ConsoleSession``. Behind a reverse proxy that signs people in
(``service.web_user_header``): the header names an admin created with ``mailgate admin add``, and
a session is opened for them on their first request (it carries their CSRF token). Every POST
carries the session's CSRF token in the form field ``csrf``; one without it is refused (403).
A POST a browser says comes from another site (``Sec-Fetch-Site``, or else an ``Origin`` whose
host is not the request's) is refused before anything else, the sign-in form's included, so that
no other page can sign a browser in, or act in its name.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import Response

from engine.storage.console import SignedIn, find_admin, session_for, start_session

COOKIE = "mailgate_session"
# the console's own files only: no inline script, no other origin, no plugin, no framing
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: every answer gets the CSP and the other protective headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the answer's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def set_session_cookie(response: Response, token: str) -> None:
    """Give the browser its session cookie (never readable by script, never sent cross-site)."""
    response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict", path="/")


def identify(request: Request, engine: Engine, user_header: str | None) -> tuple[SignedIn | None, str | None]:
    """(who sent the request, a new session token to set as the cookie, if one was opened)."""
    token = request.cookies.get(COOKIE)
    current = session_for(engine, token) if token else None
    if user_header is None:
        return current, None
    name = request.headers.get(user_header, "").strip()
    if not name:
        return None, None
    if current is not None and current.admin == name:
        return current, None
    admin = find_admin(engine, name)
    if admin is None:
        return None, None
    new_token, csrf = start_session(engine, admin.name)
    return SignedIn(admin.name, admin.role, csrf), new_token


def from_another_site(request: Request) -> bool:
    """Whether the browser says this request was sent by a page of another site (or origin).

    ``Sec-Fetch-Site`` when the browser sends it (all current ones do); else the ``Origin``
    header's host against the request's ``Host``. A request with neither (not from a browser
    form: curl, scripts) is not from another site; the CSRF token still guards every action.
    """
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from.strip().lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    origin_host = urlsplit(origin.strip()).netloc.lower()
    return origin.strip().lower() == "null" or origin_host != request.headers.get("host", "").lower()


def csrf_ok(signed_in: SignedIn, sent: object) -> bool:
    """Whether the form's ``csrf`` field is this session's token."""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), signed_in.csrf_token.encode())

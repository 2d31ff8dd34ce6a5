"""The admin console as an ASGI app (Starlette): its routes, sign-in, and the guard every page passes.

Pages are plain functions ``(console, ask) -> Response`` run in a worker thread (the storage layer
is synchronous); ``guarded`` wraps each one: it finds who is asking (``engine.web.security``),
sends strangers to the sign-in page, refuses a POST without the session's CSRF token, refuses a
viewer what only admins may do, and turns an error into a page, never a traceback. Templates are
Jinja2 with autoescaping on: every value from a mail is text, never markup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from engine.errors import ConfigError, MailgateError
from engine.runtime import Runtime
from engine.storage.console import end_session, find_admin, record_action, start_session
from engine.storage.db import transaction
from engine.web import pages_accounts, pages_mail, pages_messages, pages_packs
from engine.web.console import Ask, Console, NotFound, Page
from engine.web.passwords import verify_password
from engine.web.security import (
    COOKIE,
    SecurityHeaders,
    csrf_ok,
    from_another_site,
    identify,
    set_session_cookie,
)

log = logging.getLogger("mailgate.web")
MAX_FORM_BYTES = 25 * 1024 * 1024  # an uploaded .eml on the try-it page


def guarded(console: Console, page: Page, *, admins_only: bool = False) -> Callable[[Request], Any]:
    """The endpoint of ``page``: signed-in people only, CSRF-checked POSTs, admins-only actions."""

    async def endpoint(request: Request) -> Response:
        engine = console.runtime.engine
        who, new_token = await run_in_threadpool(identify, request, engine, console.user_header)
        if who is None:
            if console.user_header is not None:
                return console.render("error.html", None, 403, message="not signed in by the proxy")
            if request.method != "GET":
                return console.render("error.html", None, 403, message="sign in first")
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        form: FormData | None = None
        if request.method == "POST" and from_another_site(request):
            return console.render("error.html", None, 403, message="refused: sent from another site")
        if request.method == "POST":
            form = await request.form(max_part_size=MAX_FORM_BYTES)
            if not csrf_ok(who, form.get("csrf")):
                return console.render(
                    "error.html", Ask(request, who), 403, message="CSRF token missing or wrong"
                )
        ask = Ask(request, who, form)
        if admins_only and not who.may_act:
            return console.render("error.html", ask, 403, message="only admins may do this; you are a viewer")
        try:
            response: Response = await run_in_threadpool(page, console, ask)
        except NotFound as exc:
            response = console.render("error.html", ask, 404, message=str(exc))
        except ConfigError as exc:
            problems = [str(problem) for problem in exc.problems]
            response = console.render("error.html", ask, 400, message="\n".join(problems))
        except MailgateError as exc:
            response = console.render("error.html", ask, 400, message=str(exc))
        except Exception as exc:
            log.exception("console page %s failed", request.url.path)
            response = console.render("error.html", ask, 500, message=f"internal error: {type(exc).__name__}")
        if new_token is not None:
            set_session_cookie(response, new_token)
        return response

    return endpoint


def _login(console: Console) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        target = request.query_params.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "GET":
            return console.render("login.html", None, next=target)
        if from_another_site(request):  # no other site may sign a browser in
            return console.render("error.html", None, 403, message="refused: sent from another site")
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        admin = await run_in_threadpool(find_admin, console.runtime.engine, name)
        if not await run_in_threadpool(verify_password, admin.password_hash if admin else None, password):
            await run_in_threadpool(_audit_sign_in, console, name[:100], False)
            return console.render("login.html", None, 401, next=target, failed=True, name=name)
        assert admin is not None
        await run_in_threadpool(_audit_sign_in, console, admin.name, True)
        token, _ = await run_in_threadpool(start_session, console.runtime.engine, admin.name)
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, token)
        return response

    return endpoint


def _audit_sign_in(console: Console, name: str, signed_in: bool) -> None:
    with transaction(console.runtime.engine) as session:
        record_action(session, name, "sign_in" if signed_in else "sign_in.refused", f"admin {name}")


def _logout(console: Console, ask: Ask) -> Response:
    token = ask.request.cookies.get(COOKIE)
    if token:
        end_session(console.runtime.engine, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def create_app(runtime: Runtime, *, user_header: str | None = None) -> Starlette:
    """The console for this installation (``user_header``: trust a reverse proxy's signed-in user)."""
    console = Console(runtime, user_header=user_header)
    routes: list[Route | Mount] = [
        Route("/login", _login(console), methods=["GET", "POST"]),
        Route("/logout", guarded(console, _logout), methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("engine.web", "static")]), name="static"),
    ]
    for module in (pages_accounts, pages_messages, pages_mail, pages_packs):
        for path, methods, page, admins_only in module.ROUTES:
            routes.append(Route(path, guarded(console, page, admins_only=admins_only), methods=methods))
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders)
    return app

"""What every console page works with: the request as a page sees it (``Ask``), the console's state
(``Console``: the installation, its templates, the audit), and ``NotFound``.

The pages (``pages_*.py``) and the app that routes to them (``app.py``) both import this module;
it imports neither, so the app can import its pages at the top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine import __version__
from engine.errors import MailgateError
from engine.runtime import Runtime
from engine.storage.console import SignedIn, record_action
from engine.storage.db import transaction


@dataclass(frozen=True)
class Ask:
    """One request as a page sees it: the request, who sent it, and its form (for a POST)."""

    request: Request
    who: SignedIn
    form: FormData | None = None

    def field(self, name: str) -> str:
        """A form field as text ('' if absent or a file)."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def query(self, name: str) -> str:
        """A query parameter ('' if absent)."""
        return self.request.query_params.get(name, "").strip()


class NotFound(MailgateError):
    """What the page shows does not exist (404)."""


class Console:
    """The console's state: the installation it shows, its templates, how people sign in."""

    def __init__(self, runtime: Runtime, *, user_header: str | None = None) -> None:
        self.runtime = runtime
        self.user_header = user_header
        self.templates = Environment(
            loader=PackageLoader("engine.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, template: str, ask: Ask | None, code: int = 200, /, **values: Any) -> HTMLResponse:
        """A page from its template; ``ask`` gives the navigation bar its user and the forms their token."""
        who, path = (ask.who, ask.request.url.path) if ask else (None, "")
        page = self.templates.get_template(template).render(who=who, path=path, version=__version__, **values)
        return HTMLResponse(page, status_code=code)

    def audit(self, ask: Ask, action: str, target: str, **detail: Any) -> None:
        """Record an action the signed-in admin took (its own transaction)."""
        with transaction(self.runtime.engine) as session:
            record_action(session, ask.who.admin, action, target, **detail)


Page = Callable[[Console, Ask], Response]

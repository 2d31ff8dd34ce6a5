"""Driving the console over HTTP in tests: Starlette's TestClient, and signing in."""

from __future__ import annotations

import warnings

from console_desk import PASSWORD

with warnings.catch_warnings():  # Starlette would rather drive httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TestClient", "sign_in"]


def sign_in(client: TestClient, name: str) -> str:
    """Sign ``client`` in as ``name``; the session's CSRF token (read from a page's form)."""
    answer = client.post("/login", data={"name": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    marker = 'name="csrf" value="'
    start = answer.text.index(marker) + len(marker)
    return answer.text[start : answer.text.index('"', start)]

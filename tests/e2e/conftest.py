"""Fixtures for the end-to-end tests: the service over IMAP and POP3 against the session's Dovecot."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_desk import PROTOCOLS, Desk, Mailbox, MakeDesk, build_desk
from servers.dovecot import Dovecot
from servers.tcp_proxy import TcpProxy
from sqlalchemy import text
from sqlalchemy.engine import Engine


@pytest.fixture
def mailbox(dovecot: Dovecot, mailbox_user: tuple[str, str]) -> Mailbox:
    """A fresh, empty Dovecot mailbox for this test."""
    user, password = mailbox_user
    return Mailbox(dovecot, user, password)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once over IMAP and once over POP3."""
    return str(request.param)


@pytest.fixture
def make_desk(tmp_path: Path, dovecot: Dovecot) -> Iterator[MakeDesk]:
    """``make_desk(accounts_yaml, database=..., extra=...)``: a desk in ``tmp_path/deskN`` (see
    ``build_desk``); its runtime is closed afterwards."""
    made: list[Desk] = []

    def build(accounts: str, **options: str) -> Desk:
        desk = build_desk(tmp_path / f"desk{len(made)}", accounts, dovecot.ca_cert, **options)
        made.append(desk)
        return desk

    yield build
    for desk in made:
        desk.runtime.close()


@pytest.fixture
def proxied_postgres(pg_admin_engine: Engine) -> Iterator[tuple[str, TcpProxy]]:
    """A fresh PostgreSQL database reached through a ``TcpProxy``: ``(url via the proxy, proxy)``."""
    name = f"mailgate_t_{secrets.token_hex(6)}"
    server = pg_admin_engine.url
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    with pg_admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = server.set(host="127.0.0.1", port=proxy.port, database=name)
        yield url.render_as_string(hide_password=False), proxy
    finally:
        proxy.close()
        with pg_admin_engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

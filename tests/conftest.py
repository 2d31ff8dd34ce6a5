"""Shared pytest fixtures for the whole suite.

Database fixtures
-----------------
- ``db_url``: runs a test twice, against a fresh SQLite file and against a fresh, uniquely named
  PostgreSQL database (marked ``postgres``). The server defaults to
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; override with env ``MAILGATE_TEST_PG_URL``.
  When the server cannot be reached the PostgreSQL case is skipped, or fails when env ``CI=true``.
- ``sqlite_url``: a fresh SQLite file only, for tests that need not run on both databases.
- ``engine``: ``open_database(db_url)`` (schema created), disposed after the test.

Mail servers
------------
- ``dovecot``: one private Dovecot for the session (``tests/servers/dovecot.py``: IMAP, IMAPS, POP3,
  POP3S on free loopback ports, a throwaway CA in ``dovecot.ca_cert``, XOAUTH2 via ``grant_token``).
  Skipped when the ``dovecot`` program is missing or cannot start, failed instead when env ``CI=true``.
- ``mailbox_user``: a fresh Dovecot user ``(name, password)`` per test, so tests never share a mailbox.

Plugins
-------
- ``plugin_site``: a folder on ``sys.path`` into which a test installs tiny plugin distributions
  (``tests/plugin_packages.py``); the modules imported from it are forgotten afterwards.

DNS
---
- ``dns_server``: a real DNS server on loopback (``tests/servers/dns.py``, dnslib) for the whole session;
  ``dns_server.address`` is what an account's ``authentication.dns_servers`` takes. Its records are
  emptied after every test that uses it.

Other shared fixtures go below the database section, each with a short comment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from plugin_packages import PluginSite
from servers.dns import DnsTestServer
from servers.dovecot import Dovecot, DovecotError, dovecot_binary, start_dovecot
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url

from engine.storage.db import open_database

DEFAULT_PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- databases ------------------------------------------------------------------------------------


def _pg_server_url() -> str:
    return os.environ.get("MAILGATE_TEST_PG_URL") or DEFAULT_PG_SERVER_URL


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine]:
    """An autocommit connection pool to the PostgreSQL server, used to create and drop test databases."""
    url = make_url(_pg_server_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        where = url.render_as_string(hide_password=True)
        message = f"PostgreSQL server {where} is not reachable: {exc}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true, so the PostgreSQL tests must run)")
        pytest.skip(f"{message} (set MAILGATE_TEST_PG_URL to point at a server)")
    yield admin
    admin.dispose()


def _fresh_postgres_database(admin: Engine) -> Iterator[str]:
    name = f"mailgate_t_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailgate.sqlite"
        return
    admin: Engine = request.getfixturevalue("pg_admin_engine")
    yield from _fresh_postgres_database(admin)


@pytest.fixture
def pg_url(pg_admin_engine: Engine) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (for tests of several processes on one database)."""
    yield from _fresh_postgres_database(pg_admin_engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of an empty SQLite database file (for tests that need only one database)."""
    return f"sqlite:///{tmp_path}/mailgate.sqlite"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The opened database (schema created) at ``db_url``; disposed after the test."""
    opened = open_database(db_url)
    yield opened
    opened.dispose()


# --- other shared fixtures (add below, each with a one-line docstring) ------------------------------


def _server_unavailable(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true, so the mail-server tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot (IMAP/POP3, TLS, XOAUTH2) for the whole session; see tests/servers/dovecot.py."""
    if dovecot_binary() is None:
        _server_unavailable("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)")
    base = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))  # under /tmp: Dovecot's users must reach it
    try:
        server = start_dovecot(base)
    except DovecotError as exc:
        shutil.rmtree(base, ignore_errors=True)
        _server_unavailable(f"Dovecot could not be started: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mailbox_user(dovecot: Dovecot) -> tuple[str, str]:
    """A fresh Dovecot user for this test: ``(name, password)``, its INBOX empty."""
    name = f"u{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(12)
    dovecot.add_user(name, password)
    return name, password


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """An extra site folder on ``sys.path`` for plugin distributions; see tests/plugin_packages.py."""
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    site = PluginSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="session")
def _dns_server_for_session() -> Iterator[DnsTestServer]:
    server = DnsTestServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_server(_dns_server_for_session: DnsTestServer) -> Iterator[DnsTestServer]:
    """The loopback DNS server (see the module docstring); its zone is emptied after the test."""
    yield _dns_server_for_session
    _dns_server_for_session.clear()

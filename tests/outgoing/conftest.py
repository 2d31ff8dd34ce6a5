"""Outgoing-mail tests: a real SMTP server on loopback and a desk whose config sends through it.

- ``smtp``: a factory ``smtp(**options)`` starting an aiosmtpd server (``tests/outgoing/smtp_test_server.py``)
  on a free loopback port; ``tls="starttls"|"implicit"`` uses the throwaway CA of ``certs``,
  ``users={login: password}`` turns on AUTH LOGIN/PLAIN, ``token=...`` accepts XOAUTH2 with it.
  Every server is stopped after the test.
- ``certs``: a throwaway CA and a certificate for localhost/127.0.0.1 (``tests/servers/tls.py``).
- ``make_desk``: ``make_desk(server_settings, account=, top=, files=, database=, **outgoing)`` writes
  a mailgate.yaml whose account ``helpdesk`` (helpdesk@desk.example, plus ``account`` keys) sends
  through one outgoing server called ``main`` (none when ``server_settings`` is None), with
  ``outgoing`` keys and ``top`` top-level keys, writes ``files`` beside it, uses ``database`` (a URL
  such as ``db_url``'s) or a SQLite file, loads the people and calls of ``outgoing_desk.STAFF``, and
  returns an ``OutDesk`` (``tests/outgoing/outgoing_desk.py``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from outgoing_desk import DESK_ADDRESS, STAFF, MakeDesk, OutDesk, StartServer
from ruamel.yaml import YAML
from servers.tls import TestCertificates, make_test_certificates
from smtp_test_server import RecordingHandler, SmtpServer, password_authenticator, server_tls_context

from engine.config.model import load_config
from engine.runtime import Runtime
from engine.storage.fixtures import load_fixtures


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    """A throwaway CA and a server certificate for localhost and 127.0.0.1."""
    return make_test_certificates(tmp_path_factory.mktemp("smtp-certs"))


@pytest.fixture
def smtp(certs: TestCertificates) -> Iterator[StartServer]:
    """A factory of loopback SMTP servers: ``smtp(tls=..., users=..., token=..., port=...)``."""
    started: list[SmtpServer] = []

    def start(
        *,
        tls: str | None = None,
        users: Mapping[str, str] | None = None,
        token: str | None = None,
        port: int = 0,
        certificates: TestCertificates | None = None,
    ) -> SmtpServer:
        handler = RecordingHandler(valid_token=token)
        chosen = certificates or certs
        options: dict[str, Any] = {}
        if tls is not None:
            context = server_tls_context(str(chosen.server_cert), str(chosen.server_key))
            if tls == "starttls":
                options.update(tls_context=context, require_starttls=True)
            else:
                options["implicit_tls"] = context
        if users is not None or token is not None:
            options.update(
                authenticator=password_authenticator(handler, dict(users or {})),
                auth_required=True,
                auth_require_tls=tls is not None,
            )
        server = SmtpServer(handler, port, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_desk(tmp_path: Path) -> Iterator[MakeDesk]:
    """A factory of desks sending through one outgoing server (see the module docstring)."""
    made: list[Runtime] = []

    def build(
        server: Mapping[str, Any] | None,
        *,
        items: str = "",
        account: Mapping[str, Any] | None = None,
        top: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        database: str | None = None,
        **outgoing: Any,
    ) -> OutDesk:
        folder = tmp_path / f"desk{len(made)}"
        folder.mkdir()
        for relative, text in (files or {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
        helpdesk: dict[str, Any] = {"name": "helpdesk", "address": DESK_ADDRESS, "connector": "memory"}
        helpdesk.update(account or {})
        config: dict[str, Any] = {
            "database": database or f"sqlite:///{folder / 'mailgate.sqlite'}",
            "mail_domain": "desk.example",
            "product_name": "Désk",
            "accounts": [helpdesk],
            **(top or {}),
        }
        if server is not None:
            outgoing["servers"] = [{"name": "main", **server}]
        if outgoing:
            config["outgoing"] = outgoing
        with (folder / "mailgate.yaml").open("w", encoding="utf-8") as handle:
            YAML().dump(config, handle)
        runtime = Runtime(load_config(folder / "mailgate.yaml"))
        made.append(runtime)
        for index, text in enumerate((STAFF, textwrap.dedent(items))):
            if text.strip():
                path = folder / f"fixtures-{index}.yaml"
                path.write_text(text, encoding="utf-8")
                load_fixtures(runtime.engine, path)
        return OutDesk(runtime, folder)

    yield build
    for runtime in made:
        runtime.close()

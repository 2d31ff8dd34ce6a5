"""Fixtures for the end-to-end tests: the service over IMAP and POP3 against the session's Dovecot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_desk import PROTOCOLS, Desk, Mailbox, MakeDesk, build_desk
from servers.dovecot import Dovecot


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

"""The service over IMAP against the real Dovecot of the test suite: IDLE push, failures, ``run --once``."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers.dovecot import Dovecot, free_port
from service_desk import account_yaml, build_service_desk, make_mail, run_async, wait_until

from connectors.base import Connector
from connectors.imap.connector import ImapConnector
from engine.config.model import AccountConfig
from engine.service import Backoff, Service, ServiceOptions
from engine.service.runner import default_connector

User = tuple[str, str]
MAILGATE = Path(sys.executable).parent / "mailgate"
FAST = ServiceOptions(retry=Backoff(initial=0.1, cap=0.5), auth_retry=Backoff(initial=0.2, cap=1.0))


def imap_account(name: str, dovecot: Dovecot, user: str, password: str, *, port: int | None = None) -> str:
    """An account entry reading ``user``'s INBOX over plain IMAP on the harness's loopback port."""
    connector = (
        f"{{type: imap, host: {dovecot.host}, port: {port or dovecot.imap_port}, security: plain, "
        f"username: {user}, password: '{password}', timeout: 10}}"
    )
    return account_yaml(name, connector, poll=3600)


class IdleWatched(ImapConnector):
    """The real IMAP connector, counting how often the service has started waiting for push."""

    waits = 0

    async def wait_for_new(self, timeout: float) -> bool:
        """Count, then IDLE as usual."""
        IdleWatched.waits += 1
        return await super().wait_for_new(timeout)


def test_idle_delivers_a_new_mail_to_the_pipeline_without_waiting_for_the_poll(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User, capsys: pytest.CaptureFixture[str]
) -> None:
    user, password = mailbox_user
    desk = build_service_desk(tmp_path, imap_account("helpdesk", dovecot, user, password))

    def idle_factory(account: AccountConfig, base_dir: Path) -> Connector:
        return IdleWatched(account.name, default_connector(account, base_dir).settings, base_dir)

    async def scenario() -> float:
        IdleWatched.waits = 0
        service = Service(desk.runtime, FAST, connector_factory=idle_factory)
        task = asyncio.create_task(service.run())
        try:
            await wait_until(lambda: IdleWatched.waits >= 1, "the service to start waiting (IDLE)")
            started = time.monotonic()
            await asyncio.to_thread(dovecot.append, user, make_mail(1))
            appended = time.monotonic()
            # the poll interval is an hour: only push can bring the mail in within the bound
            await wait_until(lambda: bool(desk.ledger()), "the appended mail to be processed")
            processed = time.monotonic()
        finally:
            service.request_stop()
            await asyncio.wait_for(task, 30)
        with capsys.disabled():
            print(
                f"\nIDLE: mail processed {processed - appended:.3f} s after its APPEND returned "
                f"({processed - started:.3f} s after the APPEND began)"
            )
        return processed - appended

    run_async(scenario())

    assert [e.message_id for e in desk.ledger()] == ["m1@example.com"]
    assert dovecot.count(user) == 0


def test_a_wrong_password_and_a_closed_port_are_reported_while_the_good_imap_account_carries_on(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = mailbox_user
    desk = build_service_desk(
        tmp_path,
        imap_account("helpdesk", dovecot, user, password)
        + imap_account("wrong_password", dovecot, user, password + "x")
        + imap_account("closed_port", dovecot, user, password, port=free_port()),
    )
    dovecot.append(user, make_mail(1))

    def reported_twice_each_and_processed() -> bool:
        def failures(event: str, account: str) -> int:
            return sum(f"event={event} account={account} " in r.message for r in caplog.records)

        return (
            failures("authentication_failed", "wrong_password") >= 2
            and failures("poll_failed", "closed_port") >= 2
            and bool(desk.ledger())
        )

    async def scenario() -> None:
        service = Service(desk.runtime, FAST)
        task = asyncio.create_task(service.run())
        try:
            await wait_until(
                reported_twice_each_and_processed, "two reports per broken account, and the mail"
            )
        finally:
            service.request_stop()
            await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        run_async(scenario())

    assert [e.message_id for e in desk.ledger("helpdesk")] == ["m1@example.com"]
    wrong, closed = desk.status("wrong_password"), desk.status("closed_port")
    assert wrong is not None and wrong.state == "auth_failed" and wrong.last_error
    assert closed is not None and closed.state == "retrying" and closed.last_error
    refused = [r for r in caplog.records if "event=authentication_failed account=wrong_password" in r.message]
    assert all(r.levelno == logging.ERROR for r in refused)


def test_run_once_over_imap_empties_the_mailbox(tmp_path: Path, dovecot: Dovecot, mailbox_user: User) -> None:
    user, password = mailbox_user
    desk = build_service_desk(tmp_path, imap_account("helpdesk", dovecot, user, password))
    for number in (1, 2, 3):
        dovecot.append(user, make_mail(number))

    result = subprocess.run(
        [str(MAILGATE), "--config", str(desk.config_path), "run", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "helpdesk: 3 processed (3 logged)"
    assert dovecot.count(user) == 0
    assert [e.message_id for e in desk.ledger()] == [f"m{n}@example.com" for n in (1, 2, 3)]

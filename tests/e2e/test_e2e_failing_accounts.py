"""A mailbox that cannot be reached and one that refuses the password are reported and retried,
while a good account in the same config has its mail processed in the same ``mailgate run``."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import pytest
from e2e_desk import Desk, Mailbox, MakeDesk, account_yaml, connector_yaml, events, mail, wait_for
from servers.dovecot import free_port

from engine.service import Backoff, Service, ServiceOptions


def _three_accounts(make_desk: MakeDesk, mailbox: Mailbox, protocol: str) -> Desk:
    """``helpdesk`` reads ``mailbox``; ``wrong_password`` and ``closed_port`` cannot."""
    return make_desk(
        account_yaml("helpdesk", connector_yaml(mailbox, protocol), poll=1)
        + account_yaml(
            "wrong_password", connector_yaml(mailbox, protocol, password=mailbox.password + "x"), poll=1
        )
        + account_yaml("closed_port", connector_yaml(mailbox, protocol, port=free_port()), poll=1)
    )


def test_mailgate_run_reports_and_retries_broken_accounts_while_the_good_one_carries_on(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str, tmp_path: Path
) -> None:
    desk = _three_accounts(make_desk, mailbox, protocol)
    mailbox.append(mail("Scanner is offline", message_id="g1@ex"))
    log = tmp_path / "run.log"
    service = desk.start(log=log)
    try:

        def good_mail_processed_and_failures_retried() -> bool:
            assert service.poll() is None, f"mailgate run exited early:\n{log.read_text()}"
            text = log.read_text()
            closed = [e for e in events(text, "poll_failed") if e["account"] == "closed_port"]
            refused = [e for e in events(text, "authentication_failed") if e["account"] == "wrong_password"]
            return bool(desk.new_calls()) and len(closed) >= 2 and len(refused) >= 1

        wait_for(good_mail_processed_and_failures_retried, "the good account's call and the failures")
        mailbox.append(mail("Scanner is still offline", message_id="g2@ex"))  # mail arriving later
        wait_for(lambda: len(desk.new_calls()) == 2, "the later mail to be processed")
    finally:
        service.send_signal(signal.SIGTERM)
        exit_status = service.wait(timeout=30)

    assert exit_status == 0, log.read_text()
    text = log.read_text()
    assert mailbox.count() == 0
    assert [(e["account"], e["outcome"]) for e in events(text, "processed")] == [("helpdesk", "logged")] * 2
    [refused, *_] = [e for e in events(text, "authentication_failed") if e["account"] == "wrong_password"]
    assert refused["error"] and float(refused["retry_in"]) > 0
    refusals = [line for line in text.splitlines() if "event=authentication_failed " in line]
    assert all(" ERROR mailgate.service event=" in line for line in refusals)  # logged as errors
    for failure in [e for e in events(text, "poll_failed") if e["account"] == "closed_port"]:
        assert failure["error"] and float(failure["retry_in"]) > 0
    assert [e["signal"] for e in events(text, "stopping")] == ["SIGTERM"]
    assert events(text, "service_stopped")

    status = desk.mailgate("status", "--json")
    assert status.returncode == 3, status.stderr  # the service has stopped
    rows = {row["account"]: row for row in map(json.loads, status.stdout.splitlines())}
    assert (rows["helpdesk"]["state"], rows["helpdesk"]["processed"]) == ("ok", 2)
    assert rows["helpdesk"]["last_poll"] and rows["helpdesk"]["last_error"] is None
    assert rows["wrong_password"]["state"] == "auth_failed"
    assert rows["closed_port"]["state"] == "retrying"
    for broken in ("wrong_password", "closed_port"):
        assert rows[broken]["last_error"] and rows[broken]["retry_at"], rows[broken]
        assert (rows[broken]["processed"], rows[broken]["last_poll"], rows[broken]["connector"]) == (
            0,
            None,
            protocol,
        )
    table = desk.mailgate("status")
    assert table.returncode == 3, table.stderr
    service, _header, *lines = table.stdout.splitlines()
    assert service.startswith("SERVICE: stopped on ")
    by_account = {line.split()[0]: line for line in lines}
    assert by_account["helpdesk"].split()[1] == "ok"
    assert by_account["wrong_password"].split()[1:3] == ["auth_failed", "never"]
    assert "(next try " in by_account["closed_port"]


def test_a_refused_pop3_password_is_retried_with_backoff(
    make_desk: MakeDesk, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process with short delays, so that the refused login is seen retried (IMAP: tests/service)."""
    desk = _three_accounts(make_desk, mailbox, "pop3")
    mailbox.append(mail("Scanner is offline", message_id="g1@ex"))
    fast = ServiceOptions(retry=Backoff(initial=0.1, cap=0.5), auth_retry=Backoff(initial=0.2, cap=1.0))

    def failures(event: str, account: str) -> int:
        return sum(f"event={event} account={account} " in r.getMessage() for r in caplog.records)

    async def scenario() -> None:
        service = Service(desk.runtime, fast)
        task = asyncio.create_task(service.run())
        try:
            while not (
                failures("authentication_failed", "wrong_password") >= 2
                and failures("poll_failed", "closed_port") >= 2
                and desk.new_calls()
            ):
                assert not task.done(), "the service stopped by itself"
                await asyncio.sleep(0.05)
        finally:
            service.request_stop()
            await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        asyncio.run(asyncio.wait_for(scenario(), 30))

    assert [summary for _, summary in desk.new_calls()] == ["Scanner is offline"]
    assert mailbox.count() == 0
    assert desk.status()["wrong_password"]["state"] == "auth_failed"
    # one pass (``mailgate run --once``) reports each account: the broken ones with state and error
    reports = {r.account: r for r in desk.run_once()}
    assert (reports["helpdesk"].error, reports["helpdesk"].processed) == (None, 0)
    assert reports["wrong_password"].state == "auth_failed" and reports["wrong_password"].error
    assert reports["closed_port"].state == "retrying" and reports["closed_port"].error

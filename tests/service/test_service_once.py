"""One pass over every account (``Service.run_once``, what ``mailgate run --once`` does), in process.

Memory mailboxes stand in for servers; the database is a real SQLite file and the config a real file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from service_desk import account_yaml, build_service_desk, make_mail, run_async

from connectors.base import AuthenticationError, Connector, ConnectorError, MessageRef
from connectors.memory import MemoryConnector, MemoryMailbox
from engine.config.model import AccountConfig
from engine.service import Service
from engine.service.runner import default_connector


def test_one_pass_processes_every_account_oldest_first_and_empties_every_mailbox(tmp_path: Path) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("helpdesk", "{type: memory, mailbox: hd}")
        + account_yaml("second", "{type: memory, mailbox: two}"),
    )
    helpdesk, second = MemoryMailbox.named("hd"), MemoryMailbox.named("two")
    helpdesk.extend(make_mail(n) for n in range(1, 6))
    helpdesk.append(make_mail(2))  # the same message again: a duplicate
    helpdesk.append(b"not a mail at all")  # quarantined
    second.extend(make_mail(n) for n in (11, 12, 13))

    reports = run_async(Service(desk.runtime).run_once())

    assert [(r.account, r.error) for r in reports] == [("helpdesk", None), ("second", None)]
    assert dict(reports[0].outcomes) == {"logged": 5, "duplicate": 1, "quarantined": 1}
    assert helpdesk.messages == {} and second.messages == {}  # every outcome was acknowledged
    assert [e.message_id for e in desk.ledger("helpdesk") if e.outcome == "logged"] == [
        f"m{n}@example.com" for n in range(1, 6)
    ]
    assert [e.outcome for e in desk.ledger("helpdesk")][-1] == "quarantined"
    assert [e.message_id for e in desk.ledger("second")] == [
        "m11@example.com",
        "m12@example.com",
        "m13@example.com",
    ]
    assert desk.call_count() == 8
    status = desk.status("helpdesk")
    assert status is not None and status.state == "ok" and status.messages_processed == 7
    assert status.last_poll_at is not None and status.last_error is None


def test_inactive_accounts_are_left_alone(tmp_path: Path) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("helpdesk", "{type: memory, mailbox: hd}")
        + account_yaml("dormant", "{type: memory, mailbox: off}", active=False),
    )
    MemoryMailbox.named("hd").append(make_mail(1))
    MemoryMailbox.named("off").append(make_mail(2))

    reports = run_async(Service(desk.runtime).run_once())

    assert [r.account for r in reports] == ["helpdesk"]
    assert list(MemoryMailbox.named("off").messages) == ["00000001"]
    assert desk.status("dormant") is None


class AcknowledgeFailsOnce(MemoryConnector):
    """A memory mailbox whose first acknowledgement fails (the server dropped the line)."""

    failures_left = 1

    async def acknowledge(self, ref: MessageRef) -> None:
        """Fail while ``failures_left`` says so, then remove the message."""
        if AcknowledgeFailsOnce.failures_left > 0:
            AcknowledgeFailsOnce.failures_left -= 1
            raise ConnectorError("connection reset while deleting")
        await super().acknowledge(ref)


def _acknowledge_fails_once(account: AccountConfig, base_dir: Path) -> Connector:
    return AcknowledgeFailsOnce(account.name, default_connector(account, base_dir).settings, base_dir)


def test_a_failed_acknowledgement_is_logged_and_the_next_pass_acknowledges_a_duplicate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    AcknowledgeFailsOnce.failures_left = 1
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: memory, mailbox: hd}"))
    box = MemoryMailbox.named("hd")
    box.append(make_mail(1))
    service = Service(desk.runtime, connector_factory=_acknowledge_fails_once)

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        first = run_async(service.run_once())
        assert first[0].error is None and dict(first[0].outcomes) == {"logged": 1}
        assert list(box.messages) == ["00000001"]  # still there: its deletion failed
        second = run_async(Service(desk.runtime, connector_factory=_acknowledge_fails_once).run_once())

    assert dict(second[0].outcomes) == {"duplicate": 1}
    assert box.messages == {}
    assert desk.call_count() == 1
    assert [e.outcome for e in desk.ledger()] == ["logged"]
    assert any(
        "event=acknowledge_failed account=helpdesk uid=00000001" in r.message
        and 'error="connection reset while deleting"' in r.message
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("failure", "state", "event", "level"),
    [
        (
            ConnectorError("connection refused by mail.example.com:993"),
            "retrying",
            "poll_failed",
            logging.WARNING,
        ),
        (
            AuthenticationError("LOGIN refused: bad password"),
            "auth_failed",
            "authentication_failed",
            logging.ERROR,
        ),
    ],
)
def test_a_failing_account_is_reported_while_the_others_are_processed(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: ConnectorError,
    state: str,
    event: str,
    level: int,
) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("broken", "{type: memory, mailbox: bad}")
        + account_yaml("helpdesk", "{type: memory, mailbox: hd}"),
    )
    MemoryMailbox.named("bad").append(make_mail(1))
    MemoryMailbox.named("bad").fail_next_connect = failure
    MemoryMailbox.named("hd").append(make_mail(2))

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        reports = run_async(Service(desk.runtime).run_once())

    broken, helpdesk = reports
    assert (broken.account, broken.state, broken.error) == ("broken", state, str(failure))
    assert helpdesk.error is None and helpdesk.processed == 1
    assert MemoryMailbox.named("hd").messages == {}
    assert list(MemoryMailbox.named("bad").messages) == ["00000001"]  # kept for the next pass
    status = desk.status("broken")
    assert status is not None and status.state == state and status.last_error == str(failure)
    assert status.last_error_at is not None and status.last_poll_at is None
    lines = [r for r in caplog.records if f"event={event} account=broken" in r.message]
    assert len(lines) == 1 and lines[0].levelno == level

"""No message stalls the service or blocks another: the real service over the real Dovecot.

A mail that once blocked its whole account (a Message-ID or a sender address too long for a
PostgreSQL index, whose error rolled the batch back and retried it forever) and mail with hostile
headers (once minutes of parsing each, in the service or its parse worker) go through with the
rest: every one leaves the mailbox, processed or quarantined with its reason.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from servers.dovecot import Dovecot
from service_desk import ServiceDesk, account_yaml, build_service_desk, make_mail, run_async
from test_service_backlog import append_all

from engine.service import Service
from engine.service.watcher import BATCH_MESSAGES

User = tuple[str, str]


def random_text(length: int) -> str:
    """Letters and digits at random: they do not compress, so PostgreSQL cannot fit them in an index."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def raw_mail(subject: str, message_id: str, sender: str = "ada@example.com", *extra: bytes) -> bytes:
    """A mail written byte for byte (a generator would fold or encode a long header)."""
    head = (
        f"From: {sender}\r\nTo: helpdesk@example.com\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
    )
    return head.encode() + b"".join(line + b"\r\n" for line in extra) + b"\r\nIt prints blank pages.\r\n"


def imap_desk(root: Path, dovecot: Dovecot, user: User, database: str) -> ServiceDesk:
    """An installation reading ``user``'s INBOX over plain IMAP, on the given database."""
    connector = (
        f"{{type: imap, host: {dovecot.host}, port: {dovecot.imap_port}, security: plain, "
        f"username: {user[0]}, password: '{user[1]}', timeout: 30}}"
    )
    return build_service_desk(root, account_yaml("helpdesk", connector, poll=3600), database=database)


def test_42_mails_with_a_3000_character_message_id_and_sender_all_leave_the_mailbox(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User, db_url: str
) -> None:
    desk = imap_desk(tmp_path, dovecot, mailbox_user, db_url)
    long_id = random_text(3_000) + "@example.com"
    long_sender = random_text(3_000) + "@example.com"
    raws = [make_mail(n) for n in range(1, 21)]
    raws.append(raw_mail("Printer 21 broken", long_id))
    raws.append(raw_mail("Printer 22 broken", "m22@example.com", long_sender))
    raws.extend(make_mail(n) for n in range(23, 43))
    append_all(dovecot, mailbox_user, raws)
    try:
        [report] = run_async(Service(desk.runtime).run_once())
    finally:
        desk.runtime.close()

    assert report.error is None
    assert dict(report.outcomes) == {"logged": 41, "quarantined": 1}
    assert dovecot.count(mailbox_user[0]) == 0
    ledger = desk.ledger()
    assert len(ledger) == 42
    by_id = {entry.message_id: entry for entry in ledger}
    assert by_id[long_id].outcome == "logged" and by_id[long_id].message_key.startswith("message-id-sha256:")
    assert by_id["m22@example.com"].outcome == "quarantined"
    assert "From header has an address of 3,012 characters" in by_id["m22@example.com"].detail
    assert desk.call_count() == 41


def test_hostile_headers_in_a_backlog_are_quarantined_naming_the_header_and_every_mail_leaves(
    tmp_path: Path, dovecot: Dovecot, mailbox_user: User
) -> None:
    desk = imap_desk(tmp_path, dovecot, mailbox_user, "sqlite:///mailgate.sqlite")
    hostile = [
        raw_mail("quotes", "h1@example.com", '"' * 100_000),
        raw_mail("letters", "h2@example.com", "a" * 150_000),
        raw_mail("\r\n ".join(["s" * 998] * 1_000), "h3@example.com"),
        raw_mail(
            "hops",
            "h4@example.com",
            "ada@example.com",
            *[b"Received: from r%d by mx" % i for i in range(10_000)],
        ),
        raw_mail(
            "many",
            "h5@example.com",
            "ada@example.com",
            b"Cc: " + b",\r\n ".join(b"u%d@example.org" % i for i in range(100_000)),
        ),
    ]
    good = [make_mail(n) for n in range(1, BATCH_MESSAGES + 11)]  # a backlog: the parse worker reads ahead
    raws = good[:5] + hostile[:2] + good[5:40] + hostile[2:] + good[40:]
    append_all(dovecot, mailbox_user, raws)
    try:
        [report] = run_async(Service(desk.runtime).run_once())
    finally:
        desk.runtime.close()

    assert report.error is None
    assert dict(report.outcomes) == {"logged": len(good), "quarantined": len(hostile)}
    assert dovecot.count(mailbox_user[0]) == 0
    held = {e.message_key: e.detail for e in desk.ledger() if e.outcome == "quarantined"}
    assert len(held) == len(hostile)
    reasons = " | ".join(held.values())
    for named in (
        "From header of 100,0",
        "From header of 150,0",
        "Subject header of ",
        "Received header fields",
        "Cc header of ",
    ):
        assert named in reasons, reasons

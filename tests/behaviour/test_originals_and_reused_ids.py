"""The original is never lost, and a reused Message-ID does not swallow a different message.

Every processed mail's raw bytes are kept compressed for ``processing.keep_originals_days`` (90 by
default), linked from its ledger entry and from the history entries it wrote. The ledger tells
two mails sharing a Message-ID apart by a fingerprint of From, Date and Subject; a re-delivery of
the same mail (even with Received headers added) stays a duplicate. Both databases.
"""

from __future__ import annotations

import base64
import random
import zlib
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import select

from engine.storage.models import LedgerEntry, OriginalMessage, utcnow
from engine.storage.originals import find_originals, purge_expired_originals

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

CALLS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
"""


def _mail(subject: str, body: str, *, message_id: str = "reused@mail.example", received: int = 0) -> bytes:
    hops = "".join(
        f"Received: from relay{n}.example by mx.example; Mon, 2 Mar 2026 09:30:0{n} +0000\r\n"
        for n in range(received)
    )
    return (
        f"{hops}From: Ada <ada@example.com>\r\nTo: helpdesk@desk.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 09:30:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def _ledger(desk: Desk) -> list[LedgerEntry]:
    with desk.session() as session:
        return list(session.exec(select(LedgerEntry).order_by(LedgerEntry.id)))


def test_a_different_message_reusing_a_message_id_is_processed_not_dropped(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    first = desk.deliver_raw(_mail("Printer jams", "The printer jams."))

    second = desk.deliver_raw(_mail("Scanner offline", "The scanner is offline."))

    assert (first.outcome, second.outcome) == ("logged", "logged")
    assert first.number != second.number
    assert second.key.startswith("reused@mail.example#")
    assert [e.message_key for e in _ledger(desk)] == ["reused@mail.example", second.key]


def test_a_redelivery_with_extra_received_headers_stays_a_duplicate(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(CALLS, database=db_url)
    desk.deliver_raw(_mail("Printer jams", "The printer jams."))
    desk.deliver_raw(_mail("Scanner offline", "The scanner is offline."))

    again = desk.deliver_raw(_mail("Printer jams", "The printer jams.", received=3))
    again_second = desk.deliver_raw(_mail("Scanner offline", "The scanner is offline.", received=2))

    assert (again.outcome, again_second.outcome) == ("duplicate", "duplicate")
    assert len(_ledger(desk)) == 2 and len(desk.outbox()) == 2


def test_a_ledger_entry_written_without_a_fingerprint_counts_as_the_same_mail(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    desk.deliver_raw(_mail("Printer jams", "The printer jams."))
    with desk.session() as session:  # as a database from before fingerprints were kept
        for entry in session.exec(select(LedgerEntry)):
            entry.fingerprint = None
            session.add(entry)
        session.commit()

    assert desk.deliver_raw(_mail("Something else", "Other text.")).outcome == "duplicate"


def test_every_processed_message_keeps_its_original_linked_from_ledger_and_history(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    raw = _mail("[CALL#10] more", "It jams on A3 only.", message_id="update@mail.example")

    result = desk.deliver_raw(raw)

    assert result.outcome == "updated"
    entry = desk.call(10)["history"][-1]
    assert entry["message_id"] == "update@mail.example"
    with desk.session() as session:
        [original] = find_originals(session, entry["message_id"])
        [row] = session.exec(select(OriginalMessage))
    assert original.raw == raw
    assert (original.account, original.message_key) == (result.account, result.key)
    assert len(row.data) < len(raw)  # kept compressed


def test_an_original_is_stored_in_the_zlib_format_that_plain_zlib_reads(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    attachment = base64.encodebytes(random.Random(5).randbytes(60_000)).decode()
    raw = _mail(
        "Printer jams", "The log:\r\n" + attachment.replace("\n", "\r\n"), message_id="log@mail.example"
    )

    desk.deliver_raw(raw)

    with desk.session() as session:
        [row] = session.exec(select(OriginalMessage))
    assert row.compression == "zlib" and row.size == len(raw)
    assert zlib.decompress(row.data) == raw  # the standard library's zlib, as any reader has it
    assert len(row.data) < len(raw) * 0.8  # base64 shrinks to about three quarters


def test_keep_originals_days_zero_keeps_no_original(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, keep_originals_days=0)

    desk.deliver_raw(_mail("Printer jams", "The printer jams."))

    with desk.session() as session:
        assert session.exec(select(OriginalMessage)).all() == []


def test_originals_older_than_the_retention_are_purged_and_newer_ones_kept(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url, keep_originals_days=30)
    desk.deliver_raw(_mail("Printer jams", "The printer jams.", message_id="old@mail.example"))
    desk.deliver_raw(_mail("Scanner offline", "Offline.", message_id="new@mail.example"))
    with desk.session() as session:
        old = session.exec(
            select(OriginalMessage).where(OriginalMessage.message_key == "old@mail.example")
        ).one()
        old.received_at = utcnow() - timedelta(days=31)
        session.add(old)
        session.commit()

    dropped = purge_expired_originals(desk.runtime.engine, 30, utcnow())

    assert dropped == 1
    with desk.session() as session:
        assert [o.message_key for o in session.exec(select(OriginalMessage))] == ["new@mail.example"]


def test_a_3000_character_message_id_keeps_its_original_found_by_that_id(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    long_id = "x" * 2988 + "@mail.example"
    raw = _mail("Printer jams", "The printer jams.", message_id=long_id)

    assert desk.deliver_raw(raw).outcome == "logged"
    assert desk.deliver_raw(_mail("Other", "Other.", message_id=long_id)).outcome == "logged"

    with desk.session() as session:
        found = find_originals(session, f"<{long_id}>")
    assert len(found) == 2 and found[0].raw == raw

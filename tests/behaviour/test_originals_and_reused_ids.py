"""The original is never lost, and a reused Message-ID does not swallow a different message.

Every processed mail's raw bytes are kept compressed for ``processing.keep_originals_days`` (90 by
default), linked from its ledger entry and from the history entries it wrote. The ledger tells
two mails sharing a Message-ID apart by a fingerprint of From, Date and Subject; a re-delivery of
the same mail (even with Received headers added) stays a duplicate. Both databases: on SQLite the
originals are kept in a file of their own beside the database (engine.storage.original_file).
"""

from __future__ import annotations

import base64
import random
import sqlite3
import zlib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import select

from engine.storage.models import LedgerEntry, OriginalMessage, utcnow
from engine.storage.original_file import OriginalsFile, StoredOriginal, timestamp
from engine.storage.originals import find_originals, originals_file_of, purge_expired_originals

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


def _stored(desk: Desk) -> list[StoredOriginal]:
    """Every original as stored, wherever the database keeps them (its table, or its originals' file)."""
    path = originals_file_of(desk.runtime.engine)
    if path is not None:
        kept = OriginalsFile(path)
        try:
            return kept.rows()
        finally:
            kept.close()
    with desk.session() as session:
        rows = session.exec(select(OriginalMessage).order_by(OriginalMessage.id)).all()
    return [
        StoredOriginal(
            r.account, r.message_key, "", r.message_id, r.received_at, r.size, r.compression, r.data
        )
        for r in rows
    ]


def _age(desk: Desk, key: str, days: int) -> None:
    """Make the original kept under ``key`` look ``days`` days old."""
    then = utcnow() - timedelta(days=days)
    path = originals_file_of(desk.runtime.engine)
    if path is not None:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE original SET received_at = ? WHERE message_key = ?", (timestamp(then), key))
        return
    with desk.session() as session:
        old = session.exec(select(OriginalMessage).where(OriginalMessage.message_key == key)).one()
        old.received_at = then
        session.add(old)
        session.commit()


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
    [row] = _stored(desk)
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

    [row] = _stored(desk)
    assert row.compression == "zlib" and row.size == len(raw)
    assert zlib.decompress(row.data) == raw  # the standard library's zlib, as any reader has it
    assert len(row.data) < len(raw) * 0.8  # base64 shrinks to about three quarters


def test_keep_originals_days_zero_keeps_no_original(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, keep_originals_days=0)

    desk.deliver_raw(_mail("Printer jams", "The printer jams."))

    assert _stored(desk) == []


def test_originals_older_than_the_retention_are_purged_and_newer_ones_kept(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url, keep_originals_days=30)
    desk.deliver_raw(_mail("Printer jams", "The printer jams.", message_id="old@mail.example"))
    desk.deliver_raw(_mail("Scanner offline", "Offline.", message_id="new@mail.example"))
    _age(desk, "old@mail.example", 31)

    dropped = purge_expired_originals(desk.runtime.engine, 30, utcnow())

    assert dropped == 1
    assert [o.message_key for o in _stored(desk)] == ["new@mail.example"]


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


def test_on_sqlite_originals_are_kept_in_a_file_of_their_own_beside_the_database(
    make_desk: MakeDesk, sqlite_url: str
) -> None:
    desk = make_desk(CALLS, database=sqlite_url)
    raw = _mail("Printer jams", "The printer jams.", message_id="own@mail.example")

    desk.deliver_raw(raw)

    path = originals_file_of(desk.runtime.engine)
    assert path is not None and path.name.endswith(".originals.sqlite") and path.exists()
    assert path.parent == Path(desk.runtime.engine.url.database or "").absolute().parent
    with desk.session() as session:
        assert session.exec(select(OriginalMessage)).all() == []  # nothing bulky in the desk's file
        [original] = find_originals(session, "<own@mail.example>")
    assert original.raw == raw


def test_a_reused_message_ids_original_in_the_originals_file_is_found_under_its_own_key(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    first_raw, second_raw = _mail("Printer jams", "Jams."), _mail("Scanner offline", "Offline.")
    first, second = desk.deliver_raw(first_raw), desk.deliver_raw(second_raw)

    with desk.session() as session:
        both = find_originals(session, "reused@mail.example")
        [own] = find_originals(session, second.key)

    assert [(o.message_key, o.raw) for o in both] == [(first.key, first_raw), (second.key, second_raw)]
    assert (own.message_key, own.raw) == (second.key, second_raw)


def test_originals_written_to_the_table_by_an_earlier_version_are_still_found_and_purged(
    make_desk: MakeDesk, sqlite_url: str
) -> None:
    desk = make_desk(CALLS, database=sqlite_url)
    raw = _mail("Printer jams", "Jams.", message_id="older@mail.example")
    with desk.session() as session:
        session.add(
            OriginalMessage(
                account="helpdesk",
                message_key="older@mail.example",
                received_at=utcnow() - timedelta(days=100),
                size=len(raw),
                data=zlib.compress(raw),
            )
        )
        session.commit()
        [found] = find_originals(session, "older@mail.example")
    assert found.raw == raw

    assert purge_expired_originals(desk.runtime.engine, 90, utcnow()) == 1
    with desk.session() as session:
        assert find_originals(session, "older@mail.example") == []

"""The running service deletes sent outgoing messages past processing.keep_sent_days, and only those."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service_desk import ServiceDesk, account_yaml, build_service_desk, run_async
from sqlmodel import col, select

from engine.service import Service
from engine.storage.db import transaction
from engine.storage.models import OutboxMessage, utcnow


def _outgoing(name: str, status: str, sent_days_ago: float | None) -> OutboxMessage:
    sent_at = utcnow() - timedelta(days=sent_days_ago) if sent_days_ago is not None else None
    return OutboxMessage(
        type="call_logged",
        to_address="ada@example.com",
        subject=name,
        message_id=f"<{name}@example.com>",
        status=status,
        sent_at=sent_at,
        created_at=utcnow() - timedelta(days=200),
    )


async def _nothing_to_send(_runtime: object) -> None:
    return None


def _desk_with_outbox(tmp_path: Path, processing: str = "") -> ServiceDesk:
    """A folder account; ``processing`` goes into the config's processing: section."""
    (tmp_path / "inbox").mkdir()
    accounts = account_yaml("helpdesk", "{type: folder, path: inbox}")
    if processing:  # build_service_desk writes `accounts:` last: the section goes before it
        desk = build_service_desk(tmp_path, accounts, database=f"sqlite:///mailgate.sqlite\n{processing}")
    else:
        desk = build_service_desk(tmp_path, accounts)
    with transaction(desk.runtime.engine) as session:
        for message in (
            _outgoing("old-sent", "sent", 120),
            _outgoing("new-sent", "sent", 10),
            _outgoing("old-failed", "failed", None),
            _outgoing("old-queued", "queued", None),
        ):
            session.add(message)
    return desk


def _left_after_one_pass(desk: ServiceDesk) -> list[str]:
    try:
        run_async(Service(desk.runtime, outbox_drainer=_nothing_to_send).run_once())
        with transaction(desk.runtime.engine) as session:
            rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))
            return [row.subject for row in rows]
    finally:
        desk.runtime.close()


def test_the_service_purges_sent_messages_past_keep_sent_days_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    desk = _desk_with_outbox(tmp_path)  # the default: 90 days
    assert _left_after_one_pass(desk) == ["new-sent", "old-failed", "old-queued"]


def test_keep_sent_days_zero_keeps_every_sent_message(tmp_path: Path) -> None:
    desk = _desk_with_outbox(tmp_path, "processing: {keep_sent_days: 0}")
    assert _left_after_one_pass(desk) == ["old-sent", "new-sent", "old-failed", "old-queued"]


def test_a_shorter_keep_sent_days_purges_more(tmp_path: Path) -> None:
    desk = _desk_with_outbox(tmp_path, "processing: {keep_sent_days: 7}")
    assert _left_after_one_pass(desk) == ["old-failed", "old-queued"]

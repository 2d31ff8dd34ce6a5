"""The delivery state machine against a real server: retries, permanent failures, outages and crashes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from outgoing_desk import T0, MakeDesk, StartServer, plain_server
from sqlalchemy import update
from sqlmodel import Session

from engine.outgoing.delivery import drain_outbox
from engine.storage.models import OutboxMessage


def test_a_4xx_answer_defers_the_message_and_a_later_attempt_delivers_it(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    server = smtp()
    server.handler.answers["ada@example.com"] = ["451 4.3.0 Mailbox busy, try later"]
    desk = make_desk(plain_server(server), retry_delay_seconds=60, database=db_url)
    desk.deliver("Monitor flickers")

    first = desk.drain(T0)
    [row] = desk.rows()
    assert [d.status for d in first.deliveries] == ["deferred"]
    assert row.status == "deferred"
    assert row.last_error == "451 4.3.0 Mailbox busy, try later"
    assert row.next_attempt_at is not None
    assert row.next_attempt_at.replace(tzinfo=None) == (T0 + timedelta(seconds=60)).replace(tzinfo=None)

    too_early = desk.drain(T0 + timedelta(seconds=59))
    assert too_early.deliveries == () and too_early.waiting == 1

    later = desk.drain(T0 + timedelta(seconds=60))
    assert [d.status for d in later.deliveries] == ["sent"]
    row = desk.row(row.id or 0)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert len(server.handler.arrived) == 1


def test_a_550_answer_fails_the_message_for_good_with_the_servers_text(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    server.handler.answers["ada@example.com"] = ["550 5.1.1 <ada@example.com>: no such user"]
    desk = make_desk(plain_server(server))
    desk.deliver("Monitor flickers")

    desk.drain(T0)
    afterwards = desk.drain(T0 + timedelta(days=30))

    [row] = desk.rows()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "550 5.1.1 <ada@example.com>: no such user"
    assert afterwards.deliveries == ()
    assert server.handler.arrived == []


def test_other_5xx_answers_are_retried_until_the_attempts_are_used_up(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    server.handler.answers["ada@example.com"] = ["552 5.2.2 Mailbox full"] * 3
    desk = make_desk(plain_server(server), max_attempts=3, retry_delay_seconds=10, max_retry_delay_seconds=15)
    desk.deliver("Monitor flickers")

    statuses: list[str] = []
    delays: list[float] = []
    for hour in range(3):
        moment = T0 + timedelta(hours=hour)
        [delivery] = desk.drain(moment).deliveries
        statuses.append(delivery.status)
        if delivery.next_attempt_at is not None:
            delays.append((delivery.next_attempt_at - moment).total_seconds())

    assert statuses == ["deferred", "deferred", "failed"]
    assert delays == [10, 15], "the delay doubles, up to max_retry_delay_seconds"
    [row] = desk.rows()
    assert row.status == "failed"
    assert row.last_error == "gave up after 3 attempts; the last: 552 5.2.2 Mailbox full"


def test_an_unreachable_server_defers_every_message_and_they_go_out_once_it_is_back(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    desk = make_desk({"host": "127.0.0.1", "port": port, "security": "plain", "timeout": 5})
    desk.deliver("Monitor flickers")
    desk.deliver("Keyboard sticks")

    down = desk.drain(T0)

    assert [d.status for d in down.deliveries] == ["deferred", "deferred"]
    assert all(f"cannot connect to 127.0.0.1:{port}" in (r.last_error or "") for r in desk.rows())

    server = smtp(port=port)
    back = desk.drain(T0 + timedelta(hours=1))

    assert [d.status for d in back.deliveries] == ["sent", "sent"]
    assert sorted(a.message["Subject"].split("] ", 1)[1] for a in server.handler.arrived) == [
        f"Call {n} has been logged" for n in sorted(r.number or 0 for r in desk.rows())
    ]


def test_a_message_left_sending_by_a_crash_is_sent_again_after_the_timeout(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server), sending_timeout_seconds=600, database=db_url)
    desk.deliver("Monitor flickers")
    [row] = desk.rows()
    with Session(desk.runtime.engine) as session:  # what a process killed mid-send leaves behind
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)  # type: ignore[arg-type]
            .values(status="sending", sending_since=T0, attempts=1)
        )
        session.commit()

    meanwhile = desk.drain(T0 + timedelta(seconds=599))
    assert meanwhile.deliveries == ()
    assert server.handler.arrived == []

    recovered = desk.drain(T0 + timedelta(seconds=600))

    assert [d.status for d in recovered.deliveries] == ["sent"]
    [arrival] = server.handler.arrived
    assert arrival.message["Message-ID"] == f"<{row.message_id}>", "the copy keeps its Message-ID"
    assert desk.row(row.id or 0).attempts == 2


def test_two_drains_at_once_send_each_message_exactly_once(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server), database=db_url)
    for subject in ("One", "Two", "Three", "Four", "Five", "Six"):
        desk.deliver(subject)

    async def both() -> list[int]:
        reports = await asyncio.gather(*(drain_outbox(desk.runtime, now=T0) for _ in range(3)))
        return [r.count("sent") for r in reports]

    sent = asyncio.run(both())

    assert sum(sent) == 6
    ids = [a.message["Message-ID"] for a in server.handler.arrived]
    assert len(ids) == len(set(ids)) == 6
    assert {r.status for r in desk.rows()} == {"sent"}


def test_several_processes_drain_one_outbox_at_once_and_send_each_message_once(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server), database=db_url, replies_per_sender_per_hour=100)
    for number in range(40):
        desk.deliver(f"Printer {number} jams")
    mailgate = [str(Path(sys.executable).parent / "mailgate"), "--config", str(desk.folder / "mailgate.yaml")]

    drains = [
        subprocess.Popen([*mailgate, "outbox", "send"], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [drain.communicate(timeout=120)[0] for drain in drains]

    assert [drain.returncode for drain in drains] == [0, 0, 0], outputs
    ids = [a.message["Message-ID"] for a in server.handler.arrived]
    assert len(ids) == len(set(ids)) == 40  # no message twice
    assert {r.status for r in desk.rows()} == {"sent"} and {r.attempts for r in desk.rows()} == {1}


def test_without_an_outgoing_server_messages_stay_queued(make_desk: MakeDesk) -> None:
    desk = make_desk(None)
    desk.deliver("Monitor flickers")

    report = desk.drain(T0)

    assert report.no_server and report.waiting == 1 and report.deliveries == ()
    assert [r.status for r in desk.rows()] == ["queued"]


def test_an_address_smtp_cannot_carry_fails_the_message_at_once(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("Monitor flickers", sender="jürgen@exämple.com")

    report = desk.drain(T0)

    [row] = desk.rows()
    assert [d.status for d in report.deliveries] == ["failed"]
    assert row.status == "failed" and "address cannot be sent" in (row.last_error or "")
    assert server.handler.arrived == []

"""How many round trips to PostgreSQL a message of a service batch costs: counted, never timed.

Each round trip is a wait for the server (0.1-0.3 ms on a loaded host, far more across a
network), so their number per message is what keeps PostgreSQL near SQLite's speed. The database
is reached through a TCP proxy (tests/servers/tcp_proxy.py) that counts the server's answers. A
change that adds a round trip to the path of every message fails here; lower the bounds when a
change removes one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_desk import Desk, build_desk, make_mail
from servers.tcp_proxy import TcpProxy
from sqlalchemy.engine import make_url

from engine.mail.message import parse_message
from engine.outgoing.outbox import look_up_our_messages, look_up_recent_replies
from engine.pipeline import ProcessResult
from engine.rules.gather import look_up_targets
from engine.rules.subject import parse_subject
from engine.storage.db import batch_transaction
from engine.storage.direct import pipelined_batch
from engine.storage.ledger import look_up_ahead
from engine.storage.models import utcnow
from engine.storage.queries import look_up_senders

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test PostgreSQL server, counting its answers."""
    server = TcpProxy("127.0.0.1", 5432)
    yield server
    server.close()


@pytest.fixture
def desk(tmp_path: Path, pg_url: str, proxy: TcpProxy) -> Iterator[Desk]:
    """The default pack on a fresh PostgreSQL database, reached through the proxy."""
    url = make_url(pg_url)
    proxy.target = (url.host or "127.0.0.1", url.port or 5432)
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    built = build_desk(tmp_path, database=through)
    yield built
    built.runtime.close()


def round_trips_of_each(
    desk: Desk, proxy: TcpProxy, raws: list[bytes], *, optimistic: bool = False
) -> list[tuple[str, int]]:
    """Process the messages in one batch, as the service does: (outcome, round trips) of each."""
    counted: list[tuple[str, int]] = []
    with batch_transaction(desk.runtime.engine, optimistic=optimistic):
        desk.process(make_mail("Warm up", message_id="<w0@example.com>"))  # secrets, first reads
        keys = [parse_message(raw).key for raw in raws]
        before = proxy.answers
        look_up_ahead("helpdesk", keys)  # as the service does when its parse worker read the batch
        senders = [parse_message(raw).from_address for raw in raws]
        look_up_senders(senders)
        look_up_recent_replies(senders, utcnow())
        look_up_our_messages(i for raw in raws for i in parse_message(raw).in_reply_to)
        keywords = desk.runtime.pack_for(desk.runtime.config.accounts[0]).keywords
        subjects = [parse_subject(parse_message(raw).subject, keywords) for raw in raws]
        look_up_targets(subjects)
        expected = (
            3 + any(b"In-Reply-To" in raw for raw in raws) + any(s.number is not None for s in subjects)
        )
        assert proxy.answers - before == expected
        for raw in raws:
            before = proxy.answers
            result: ProcessResult = desk.process(raw)
            counted.append((result.outcome, proxy.answers - before))
    return counted


def test_a_message_of_a_batch_costs_a_bounded_number_of_round_trips(desk: Desk, proxy: TcpProxy) -> None:
    raws = [
        make_mail("Printer broken", "ada@example.com", message_id="<k1@example.com>"),  # known sender
        make_mail("Screen broken", "new1@example.com", message_id="<n1@example.com>"),  # new person
        b"In-Reply-To: <earlier@example.com>\n"
        + make_mail("RE: [CALL#100] still broken", "ada@example.com", message_id="<u1@example.com>"),
        make_mail("Mouse broken", "ada@example.com", message_id="<k2@example.com>"),
    ]
    counted = round_trips_of_each(desk, proxy, raws)
    assert [outcome for outcome, _ in counted] == ["logged", "logged", "updated", "logged"]
    known, new = BOUND_NEW_CALL_KNOWN_SENDER, BOUND_NEW_CALL_NEW_SENDER
    bounds = [known, new, BOUND_UPDATE, known]
    for (outcome, trips), bound in zip(counted, bounds, strict=True):
        assert trips <= bound, f"{outcome}: {trips} round trips, at most {bound} expected ({counted})"


def test_a_duplicate_in_a_batch_costs_no_round_trip(desk: Desk, proxy: TcpProxy) -> None:
    raw = make_mail("Printer broken", "ada@example.com", message_id="<d1@example.com>")
    counted = round_trips_of_each(desk, proxy, [raw, raw])
    assert [outcome for outcome, _ in counted] == ["logged", "duplicate"]
    assert counted[1][1] == 0, counted  # the ledger, asked ahead, knows it was just written


def test_in_a_batch_not_settled_per_message_a_message_waits_only_for_what_it_reads(
    desk: Desk, proxy: TcpProxy
) -> None:
    raws = [
        make_mail("Printer broken", "ada@example.com", message_id="<k1@example.com>"),  # known sender
        b"In-Reply-To: <earlier@example.com>\n"
        + make_mail("RE: [CALL#100] still broken", "ada@example.com", message_id="<u1@example.com>"),
        make_mail("Mouse broken", "ada@example.com", message_id="<k2@example.com>"),
    ]
    counted = round_trips_of_each(desk, proxy, raws, optimistic=True)
    assert [outcome for outcome, _ in counted] == ["logged", "updated", "logged"]
    # none: a new call's number was taken with the warm-up's, several at once, and the call an
    # update names was read ahead with the batch
    assert [trips for _, trips in counted] == [0, 0, 0], counted


# the round trips of a message today (each read, and one wait for its writes at its end)
BOUND_NEW_CALL_KNOWN_SENDER = 1
BOUND_NEW_CALL_NEW_SENDER = 2
BOUND_UPDATE = 1


def test_a_batchs_writes_go_on_one_cursor_and_all_of_them_land(desk: Desk, proxy: TcpProxy) -> None:
    with batch_transaction(desk.runtime.engine):
        batch = pipelined_batch()
        assert batch is not None and batch.writes is None
        first = desk.process(make_mail("Printer broken", "ada@example.com", message_id="<c1@example.com>"))
        cursor = batch.writes
        assert cursor is not None  # the first message's writes made it
        second = desk.process(make_mail("Screen broken", "new2@example.com", message_id="<c2@example.com>"))
        assert batch.writes is cursor  # and the second message's writes went on it too
    assert (first.outcome, second.outcome) == ("logged", "logged")
    assert [entry["message_id"] for entry in desk.ledger()][-2:] == ["c1@example.com", "c2@example.com"]
    assert desk.call(first.number or 0) is not None and desk.call(second.number or 0) is not None

"""Loop and abuse safety: whom mailgate never answers, the hourly reply limit, and answers threading back."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from outgoing_desk import DESK_ADDRESS, T0, MakeDesk, OutDesk, StartServer, plain_server


def not_answered(desk: OutDesk) -> list[list[str]]:
    """The ``not_answered`` reasons of every ledger entry, oldest first."""
    return [json.loads(entry.detail).get("not_answered", []) for entry in desk.ledger()]


def test_beyond_the_hourly_limit_mail_is_processed_but_not_answered(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server), replies_per_sender_per_hour=2, database=db_url)

    results = [desk.deliver(f"Problem {n}") for n in range(3)]
    desk.drain(T0)

    assert [r.outcome for r in results] == ["logged", "logged", "logged"]
    assert [len(r.replies) for r in results] == [1, 1, 0]
    assert len(server.handler.arrived) == 2
    assert not_answered(desk)[2] == [
        "rate limit: 2 automatic replies to ada@example.com in the last hour (at most 2)"
    ]
    assert not_answered(desk)[:2] == [[], []]


def test_the_ledger_entry_lists_each_reply_with_all_its_fields(make_desk: MakeDesk) -> None:
    from dataclasses import asdict

    desk = make_desk(None)

    result = desk.deliver("Problem with replies")

    assert len(result.replies) == 1
    detail = json.loads(desk.ledger()[0].detail)
    assert detail["replies"] == [asdict(reply) for reply in result.replies]


def test_the_limit_counts_per_address_so_others_are_still_answered(make_desk: MakeDesk) -> None:
    desk = make_desk(None, replies_per_sender_per_hour=1)

    desk.deliver("Problem one")
    refused = desk.deliver("Problem two")
    other = desk.deliver("Problem three", sender="bob@example.com")

    assert (len(refused.replies), len(other.replies)) == (0, 1)


@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        ("news@lists.example", {"List-Id": "<news.lists.example>"}, "mailing list"),
        ("news@lists.example", {"Precedence": "list"}, "Precedence: list"),
        ("ooo@example.com", {"Auto-Submitted": "auto-replied"}, "Auto-Submitted"),
        ("ada@example.com", {"Return-Path": "<>"}, "null sender"),
        ("MAILER-DAEMON@mx.example", {}, "bounce"),
        (DESK_ADDRESS, {}, "one of our own addresses"),
        ("noreply@desk.example", {}, "one of our own addresses"),
    ],
)
def test_machines_lists_bounces_and_our_own_addresses_get_no_answer(
    make_desk: MakeDesk, sender: str, headers: dict[str, str], reason: str
) -> None:
    desk = make_desk(None, account={"from_address": "noreply@desk.example"})

    subject = "Undelivered Mail Returned to Sender" if "DAEMON" in sender else "Hello"
    result = desk.deliver(subject, sender=sender, headers=headers)

    assert result.replies == ()
    [reasons] = not_answered(desk)
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_answering_a_delivered_auto_reply_updates_the_right_call(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    """End to end: the user answers the reply the SMTP server received, and the answer threads back."""
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("Projector is dark", sender="Ada User <ada@example.com>")
    desk.deliver("Keyboard sticks", sender="Ada User <ada@example.com>")  # a second call, not to be touched
    desk.drain(T0)
    first = server.handler.arrived[0].message
    number = next(r.number for r in desk.rows() if f"<{r.message_id}>" == first["Message-ID"])

    answer = EmailMessage()
    answer["From"] = "Ada User <ada@example.com>"
    answer["To"] = first["From"]
    answer["Subject"] = "Re: " + first["Subject"]
    answer["Date"] = format_datetime(T0)
    answer["Message-ID"] = "<answer-1@mail.example>"
    answer["In-Reply-To"] = first["Message-ID"]
    answer["References"] = first["Message-ID"]
    answer.set_content("It works again after a restart.\n\n> quoted text of the auto-reply\n")
    result = desk.deliver_raw(answer.as_bytes())

    assert (result.outcome, result.entity, result.number) == ("updated", "call", number)
    desk.drain(T0)
    confirmation = server.handler.arrived[-1].message
    assert confirmation["In-Reply-To"] == "<answer-1@mail.example>"
    assert confirmation["Subject"] == f"[CALL#{number}] Call {number} has been updated"


def test_the_limit_counts_plus_tag_variants_of_one_mailbox_together(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    """ann+1@, ANN+2@, ... are one mailbox: 15 variants get 10 replies, not 15."""
    server = smtp()
    desk = make_desk(plain_server(server), database=db_url)  # the default limit: 10 an hour
    senders = [f"{'ANN' if n % 2 else 'ann'}+{n}@example.com" for n in range(15)]

    results = [desk.deliver(f"Problem {n}", sender=sender) for n, sender in enumerate(senders)]
    desk.drain(T0)

    assert [r.outcome for r in results] == ["logged"] * 15
    assert [len(r.replies) for r in results] == [1] * 10 + [0] * 5
    assert len(server.handler.arrived) == 10
    assert (
        not_answered(desk)[10:]
        == [["rate limit: 10 automatic replies to ann@example.com in the last hour (at most 10)"]] * 5
    )
    assert {row.answered_address for row in desk.rows()} == {"ann@example.com"}


def _answer(ours: EmailMessage, sender: str, subject: str) -> bytes:
    answer = EmailMessage()
    answer["From"], answer["To"], answer["Subject"] = sender, ours["From"], subject
    answer["Date"] = format_datetime(T0)
    answer["Message-ID"] = f"<answer-{uuid.uuid4().hex}@mail.example>"
    answer["In-Reply-To"] = ours["Message-ID"]
    answer["References"] = ours["Message-ID"]
    answer.set_content("It works again after a restart.\n")
    return answer.as_bytes()


def test_an_answer_whose_tag_was_edited_away_threads_by_the_delivered_reply_token(
    smtp: StartServer, make_desk: MakeDesk, db_url: str
) -> None:
    """The token travels in the Message-ID the SMTP server received; only its recipient can use it."""
    server = smtp()
    desk = make_desk(plain_server(server), database=db_url)
    desk.deliver("Projector is dark", sender="Ada User <ada@example.com>")
    desk.deliver("Keyboard sticks", sender="Ada User <ada@example.com>")  # a second call, not to be touched
    desk.drain(T0)
    first = server.handler.arrived[0].message
    number = next(r.number for r in desk.rows() if f"<{r.message_id}>" == first["Message-ID"])
    assert f".call{number}." in first["Message-ID"]

    replayed = desk.deliver_raw(_answer(first, "Mallory <mallory@evil.example>", "Re: projector"))
    answered = desk.deliver_raw(_answer(first, "Ada User <ada@example.com>", "Re: projector"))

    assert (replayed.outcome, replayed.rule) == ("logged", "log_new_call")
    assert replayed.number not in (number, number + 1)
    assert (answered.outcome, answered.entity, answered.number) == ("updated", "call", number)

"""Rule 11 and the ledger: replies are marked, threaded and tagged; texts come from the pack; no repeats."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import MakeDesk

ITEMS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
  - {number: 12, status: closed, user: ada@example.com, assigned_analyst: grace@example.com, summary: Old}
requests:
  - {number: 50, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Phone}
tasks:
  - {number: 500, kind: task, status: open, request: 50, sequence: 1, assigned_analyst: alan@example.com}
  - {number: 501, kind: approval, status: open, request: 50, sequence: 1, approver: fran@example.com}
"""

# (subject, sender, expected reply type, expected tag in the reply's subject)
REPLIES = [
    ("Printer on fire", "ada@example.com", "call_logged", "[CALL#13]"),
    ("[CALL#10] more", "ada@example.com", "call_updated", "[CALL#10]"),
    ("[CALL#12] more", "ada@example.com", "call_already_closed", "[CALL#12]"),
    ("[CLOSE#10]", "ada@example.com", "call_closed", "[CALL#10]"),
    ("[CLOSE#10]", "bob@example.com", "insufficient_permission", "[CALL#10]"),
    ("[REQ#50] more", "ada@example.com", "request_updated", "[REQ#50]"),
    ("[TASK#500] more", "alan@example.com", "task_updated", "[TASK#500]"),
    ("[APPROVE#501]", "fran@example.com", "task_approved", "[TASK#501]"),
    ("[REJECT#501]", "fran@example.com", "task_rejected", "[TASK#501]"),
    ("[APPROVE#501]", "stranger@elsewhere.example", "sender_not_identified", "[TASK#501]"),
    ("[MyCalls]", "grace@example.com", "summary_calls", None),
]


@pytest.mark.parametrize(("subject", "sender", "kind", "tag"), REPLIES, ids=[r[2] for r in REPLIES])
def test_every_reply_is_auto_replied_threaded_and_tagged(
    make_desk: MakeDesk, subject: str, sender: str, kind: str, tag: str | None
) -> None:
    desk = make_desk(ITEMS)
    desk.deliver(
        subject, sender=sender, message_id="incoming-1@mail.example", references=["earlier@mail.example"]
    )
    [reply] = desk.outbox()
    assert (reply["type"], reply["to"]) == (kind, sender)
    assert desk.headers_of(reply["message_id"])["Auto-Submitted"] == "auto-replied"
    assert reply["in_reply_to"] == "incoming-1@mail.example"
    assert reply["references"].split() == ["<earlier@mail.example>", "<incoming-1@mail.example>"]
    assert reply["message_id"].endswith("@desk.example")
    if tag is not None:
        assert tag in reply["subject"]


def test_reply_references_end_with_the_incoming_message_when_it_has_no_references(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(ITEMS)
    desk.deliver("[CALL#10] more", message_id="lonely@mail.example")
    [reply] = desk.outbox()
    assert (reply["in_reply_to"], reply["references"]) == ("lonely@mail.example", "<lonely@mail.example>")


def test_notifications_are_auto_generated_and_not_threaded_to_the_senders_mail(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS, email_at_update=True)
    desk.deliver("[CALL#10] more", message_id="incoming-2@mail.example")
    [note] = desk.outbox_to("grace@example.com")
    assert desk.headers_of(note["message_id"])["Auto-Submitted"] == "auto-generated"
    assert note["in_reply_to"] is None
    assert "[CALL#10]" in note["subject"]


def test_answering_a_logged_reply_updates_that_call_with_the_new_text_only(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    logged = desk.deliver("Scanner will not scan", body="It shows error E42.\n")
    [reply] = desk.outbox()
    answer = (
        "The error is now E43.\n\n"
        f"On Mon, 2 Mar 2026 at 09:30, Service Desk <{desk.account.address}> wrote:\n"
        + "".join(f"> {line}\n" for line in reply["body"].splitlines())
    )
    result = desk.deliver("Re: " + reply["subject"], body=answer, in_reply_to=reply["message_id"])
    assert (result.outcome, result.entity, result.number) == ("updated", "call", logged.number)
    [update] = desk.texts(desk.call(logged.number or 0), "email_update")
    assert "The error is now E43." in update
    assert "Thank you for contacting" not in update
    assert not desk.has_call((logged.number or 0) + 1)


def test_answers_typed_into_outlooks_copy_of_our_reply_are_kept_in_the_history(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    logged = desk.deliver("Scanner will not scan", body="It shows error E42.\n")
    [reply] = desk.outbox()
    copy = reply["body"].splitlines()
    answer = (
        "My answers are in the copy below.\n\n"
        f"From: Service Desk <{desk.account.address}>\n"
        "Sent: Monday, March 2, 2026 9:31 AM\n"
        "To: Ada <ada@example.com>\n"
        f"Subject: {reply['subject']}\n\n"
        + "\n".join([copy[0], "It is a Canon LiDE 400, on USB.", *copy[1:]])
        + "\n"
    )
    desk.deliver("RE: " + reply["subject"], body=answer, in_reply_to=reply["message_id"])
    [update] = desk.texts(desk.call(logged.number or 0), "email_update")
    assert "My answers are in the copy below." in update
    assert "It is a Canon LiDE 400, on USB." in update
    assert "Thank you for contacting" not in update and copy[0] not in update


@pytest.mark.parametrize(
    ("first", "sender", "entity", "number"),
    [
        ("[REQ#50] more", "ada@example.com", "request", 50),
        ("[TASK#500] more", "alan@example.com", "task", 500),
    ],
)
def test_answering_a_request_or_task_reply_updates_that_item(
    make_desk: MakeDesk, first: str, sender: str, entity: str, number: int
) -> None:
    desk = make_desk(ITEMS)
    desk.deliver(first, sender=sender)
    [reply] = desk.outbox()
    result = desk.deliver(
        "RE: " + reply["subject"], sender=sender, body="Second note.\n", in_reply_to=reply["message_id"]
    )
    assert (result.outcome, result.entity, result.number) == ("updated", entity, number)


CUSTOM_PACK = """\
name: acme
extends: default
templates:
  call_logged:
    subject: "Ticket {{ number }} opened by {{ product_name }}"
    body: |
      {{ product_name }} opened ticket {{ number }} for {{ sender_name }}.
"""


def test_texts_and_product_name_come_from_the_pack_and_the_config(make_desk: MakeDesk) -> None:
    desk = make_desk(
        ITEMS,
        rule_pack="acme",
        product_name="Acme Desk",
        flags={"update_closed_calls": True},
        files={"rules/acme.yaml": CUSTOM_PACK},
    )
    logged = desk.deliver("Projector flickers", sender="Ada User <ada@example.com>")
    desk.deliver("[CALL#12] thanks")
    desk.deliver("[CALL#10] more")
    subjects = [m["subject"] for m in desk.outbox()]
    n = logged.number
    assert subjects == [
        f"[CALL#{n}] Ticket {n} opened by Acme Desk",
        "[CALL#12] Call No 12 has been updated by Acme Desk.",
        "[CALL#10] Call 10 has been updated",
    ]
    assert desk.outbox()[0]["body"].strip() == f"Acme Desk opened ticket {n} for Ada User."


def test_same_message_id_in_the_same_account_is_a_duplicate_without_effect(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    first = desk.deliver("Printer on fire", message_id="once@mail.example")
    again = desk.deliver("Printer on fire", message_id="once@mail.example")
    assert (first.outcome, again.outcome) == ("logged", "duplicate")
    assert not desk.has_call((first.number or 0) + 1)
    assert len(desk.outbox()) == 1
    assert [e["outcome"] for e in desk.ledger()] == ["logged"]


def test_duplicate_update_does_not_update_twice(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    desk.deliver("[CALL#10] more", message_id="upd@mail.example")
    assert desk.deliver("[CALL#10] more", message_id="upd@mail.example").outcome == "duplicate"
    assert len(desk.texts(desk.call(10), "email_update")) == 1


def test_same_message_id_in_another_account_is_processed_there(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(
        ITEMS, other_accounts=[{"name": "facilities", "flags": {"auto_reply": False}}], database=db_url
    )
    here = desk.deliver("Printer on fire", message_id="twice@mail.example")
    there = desk.deliver("Printer on fire", message_id="twice@mail.example", account="facilities")
    assert (here.outcome, there.outcome) == ("logged", "logged")
    assert (here.account, there.account) == ("helpdesk", "facilities")
    assert there.number == (here.number or 0) + 1 and desk.has_call(there.number or 0)
    assert [(e["account"], e["outcome"]) for e in desk.ledger()] == [
        ("helpdesk", "logged"),
        ("facilities", "logged"),
    ]
    assert len(desk.outbox()) == 1

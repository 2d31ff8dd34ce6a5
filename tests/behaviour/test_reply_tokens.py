"""Signed reply tokens: a reply quoting our Message-ID proves its sender reads that mailbox, and
threads to the item even when the subject's tag was edited away; forged, replayed and expired
tokens prove and thread nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from engine.identity.reply_tokens import ItemRef, read_token, token_is_valid
from engine.rules.explain import explain_message
from engine.storage.db import open_database
from engine.storage.models import ReplyTokenSecret, utcnow
from engine.storage.token_keys import rotate_token_secret, token_secret_rows, token_secrets

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

ITEMS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
  - {number: 11, status: open, user: bob@example.com, assigned_analyst: grace@example.com, summary: Laptop}
requests:
  - {number: 50, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Phone}
tasks:
  - {number: 500, kind: task, status: open, request: 50, sequence: 1, assigned_analyst: alan@example.com}
"""


def _our_message(desk: Desk, subject: str = "[CALL#10] first", sender: str = "ada@example.com") -> str:
    """Make the desk answer ``sender`` about an item and return our answer's Message-ID."""
    desk.deliver(subject, sender=sender)
    return str(desk.outbox_to(sender)[-1]["message_id"])


def _raw(
    subject: str, sender: str, in_reply_to: str | None = None, references: tuple[str, ...] = ()
) -> bytes:
    """A reply as a mail program writes it (for ``explain``, which takes bytes)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "helpdesk@desk.example", subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = " ".join(f"<{r}>" for r in references)
    msg.set_content("Still broken.\n")
    return msg.as_bytes()


def _secrets(desk: Desk) -> tuple[bytes, ...]:
    with desk.session() as session:
        return token_secrets(session).verifying


# --- signing --------------------------------------------------------------------------------------------


def test_every_outgoing_message_id_carries_a_token_for_its_item_and_recipient(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url, email_at_update=True)
    desk.deliver("[CALL#10] more")
    [reply] = desk.outbox_to("ada@example.com")
    [note] = desk.outbox_to("grace@example.com")
    for row, recipient in ((reply, "ada@example.com"), (note, "grace@example.com")):
        token = read_token(row["message_id"])
        assert token is not None and token.item == ItemRef("call", 10)
        assert token_is_valid(token, recipient, _secrets(desk))
        assert not token_is_valid(token, "bob@example.com", _secrets(desk))
    desk.deliver("[MyCalls]", sender="grace@example.com")
    summary = read_token(desk.outbox_to("grace@example.com")[-1]["message_id"])
    assert summary is not None and summary.item is None


def test_the_secret_is_made_when_the_database_is_first_opened_and_kept_after(db_url: str) -> None:
    first = open_database(db_url)
    try:
        with Session(first) as session:
            made = token_secrets(session)
    finally:
        first.dispose()
    again = open_database(db_url)
    try:
        [row] = token_secret_rows(again)
        with Session(again) as session:
            assert token_secrets(session) == made
            assert session.get(ReplyTokenSecret, row["id"]) is not None
        assert row["state"] == "signing"
    finally:
        again.dispose()


# --- threading and proof ----------------------------------------------------------------------------------


def test_a_reply_with_the_tag_edited_away_updates_the_call_its_token_names(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    ours = _our_message(desk)
    result = desk.deliver("Re: my printer, again", body="It jams again.\n", in_reply_to=ours)
    assert (result.outcome, result.rule, result.entity, result.number) == (
        "updated",
        "update_call",
        "call",
        10,
    )
    assert "It jams again." in desk.texts(desk.call(10), "email_update")[-1]
    assert not desk.has_call(12)  # no new call was logged


def test_a_token_only_in_references_threads_too(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)
    result = desk.deliver("printer", in_reply_to="someone-else@mail.example", references=[ours])
    assert (result.outcome, result.number) == ("updated", 10)


def test_request_and_task_tokens_thread_to_their_item(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    about_request = _our_message(desk, "[REQ#50] first")
    about_task = _our_message(desk, "[TASK#500] first", sender="alan@example.com")
    request = desk.deliver("Re: the phone", in_reply_to=about_request)
    task = desk.deliver("Re: the job", sender="alan@example.com", in_reply_to=about_task)
    assert (request.rule, request.entity, request.number) == ("update_request", "request", 50)
    assert (task.rule, task.entity, task.number) == ("update_task", "task", 500)


def test_explain_shows_the_valid_token_and_the_threading(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)
    explained = explain_message(desk.runtime, desk.account, _raw("Re: printer", "ada@example.com", ours))
    assert explained.facts["message.reply_token"] == "valid"
    assert (explained.facts["intent"], explained.facts["number"]) == ("update_call", 10)
    assert explained.rule == "update_call"
    assert any("threads the mail to call 10" in note for note in explained.notes)
    assert "note: the subject names no item; a reply token threads the mail to call 10" in explained.to_text()


def test_a_tag_in_the_subject_wins_over_the_token_and_is_not_proven_by_it(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)  # ada's token for call 10
    explained = explain_message(desk.runtime, desk.account, _raw("[CALL#11] me too", "ada@example.com", ours))
    assert (explained.facts["number"], explained.facts["message.reply_token"]) == (11, "other_item")
    result = desk.deliver("[CALL#11] me too", in_reply_to=ours)
    assert (result.entity, result.number) == ("call", 11)


def test_a_token_replayed_from_another_address_is_refused_and_threads_nothing(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    ours = _our_message(desk)  # signed for ada
    for sender in ("bob@example.com", "ada+x@example.com", "mallory@evil.example"):
        explained = explain_message(desk.runtime, desk.account, _raw("Re: printer", sender, ours))
        assert (explained.facts["message.reply_token"], explained.facts["intent"]) == (
            "refused",
            "unrecognised",
        )
        assert any("1 reply token(s) refused" in note for note in explained.notes)
        result = desk.deliver("Re: printer", sender=sender, in_reply_to=ours)
        assert (result.outcome, result.rule) == ("logged", "log_new_call")
        assert result.number != 10
    assert "Still broken" not in str(desk.call(10)["history"])


def test_a_forged_token_naming_another_item_is_refused_and_threads_nothing(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)  # about call 10
    forged = ours.replace(".call10.", ".call11.")
    explained = explain_message(desk.runtime, desk.account, _raw("Re: laptop", "ada@example.com", forged))
    assert explained.facts["message.reply_token"] == "refused"
    result = desk.deliver("Re: laptop", in_reply_to=forged)
    assert (result.outcome, result.rule) == ("logged", "log_new_call")
    assert desk.call(11)["history"] == []


def test_a_reply_whose_token_was_stripped_is_new_mail(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    _our_message(desk)
    explained = explain_message(desk.runtime, desk.account, _raw("Re: printer", "ada@example.com"))
    assert explained.facts["message.reply_token"] == "none"
    result = desk.deliver("Re: printer", references=["their-own-thread@mail.example"])
    assert (result.outcome, result.rule) == ("logged", "log_new_call")


# --- rotation -------------------------------------------------------------------------------------------


def test_a_token_signed_before_a_rotation_still_threads_within_the_grace_period(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    before = _our_message(desk)
    rotation = rotate_token_secret(desk.runtime.engine, timedelta(days=30))
    assert [r["state"] for r in token_secret_rows(desk.runtime.engine)] == ["verifying", "signing"]
    result = desk.deliver("Re: printer", in_reply_to=before)
    assert (result.outcome, result.number) == ("updated", 10)
    after = str(desk.outbox_to("ada@example.com")[-1]["message_id"])
    with desk.session() as session:
        signing = token_secrets(session).signing
        current = session.get(ReplyTokenSecret, rotation.new_id)
    assert current is not None and bytes.fromhex(current.secret) == signing
    token = read_token(after)
    assert token is not None and token_is_valid(token, "ada@example.com", [signing])


def test_a_token_whose_secret_is_past_its_grace_is_refused(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(ITEMS, database=db_url)
    before = _our_message(desk)
    rotate_token_secret(desk.runtime.engine, timedelta(days=1), now=utcnow() - timedelta(days=2))
    assert [r["state"] for r in token_secret_rows(desk.runtime.engine)] == ["expired", "signing"]
    result = desk.deliver("Re: printer", in_reply_to=before)
    assert (result.outcome, result.rule) == ("logged", "log_new_call")


def test_a_rotation_without_grace_refuses_every_older_token_at_once(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    oldest = _our_message(desk)
    rotate_token_secret(desk.runtime.engine, timedelta(days=90))
    rotate_token_secret(desk.runtime.engine, timedelta(0))  # the secret leaked: nothing older counts
    assert [r["state"] for r in token_secret_rows(desk.runtime.engine)] == ["expired", "expired", "signing"]
    assert desk.deliver("Re: printer", in_reply_to=oldest).rule == "log_new_call"


def test_a_secret_deleted_by_hand_is_made_again_when_a_message_is_signed(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    with desk.session() as session:
        for row in session.exec(select(ReplyTokenSecret)):
            session.delete(row)
        session.commit()
    ours = _our_message(desk)
    [row] = token_secret_rows(desk.runtime.engine)
    assert row["state"] == "signing"
    assert desk.deliver("Re: printer", in_reply_to=ours).number == 10


# --- authentication ---------------------------------------------------------------------------------


REQUIRED = {"commands_require_authentication": True}


def test_a_valid_token_authenticates_the_sender_for_its_item_only(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)  # ada's token for call 10
    same_item = explain_message(desk.runtime, desk.account, _raw("[CALL#10] more", "ada@example.com", ours))
    other_item = explain_message(desk.runtime, desk.account, _raw("[CALL#11] more", "ada@example.com", ours))
    assert (same_item.facts["sender.authenticated"], same_item.facts["sender.authentication"]) == (
        True,
        "reply_token",
    )
    assert same_item.authentication is not None
    assert same_item.authentication.evidence.startswith(
        "reply token signed for ada@example.com about call 10"
    )
    assert (other_item.facts["sender.authenticated"], other_item.facts["sender.authentication"]) == (
        False,
        "none",
    )


def test_a_command_answering_our_mail_about_its_item_is_carried_out_where_commands_need_proof(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, flags=REQUIRED, database=db_url)
    ours = _our_message(desk)
    without = desk.deliver("[CLOSE#10]")
    assert (without.outcome, without.rule) == ("refused", "command_from_unauthenticated_sender")
    result = desk.deliver("Re: [CLOSE#10]", in_reply_to=ours)
    assert (result.outcome, result.rule) == ("closed", "close_call")
    assert desk.call(10)["status"] == "closed"
    entry = desk.ledger()[-1]
    assert (
        entry["detail"]["authentication"]["authenticated"],
        entry["detail"]["authentication"]["method"],
    ) == (
        True,
        "reply_token",
    )


def test_a_valid_token_does_not_authenticate_a_mail_with_two_subject_headers(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    ours = _our_message(desk)  # ada's token for call 10
    twice = b"Subject: [CLOSE#10]\n" + _raw("[CALL#10] more", "ada@example.com", ours)
    explained = explain_message(desk.runtime, desk.account, twice)
    assert (explained.facts["sender.authenticated"], explained.facts["sender.authentication"]) == (
        False,
        "none",
    )
    assert explained.authentication is not None
    assert explained.authentication.evidence.startswith("the mail has 2 Subject headers")


def test_a_token_for_another_item_or_another_recipient_does_not_authenticate_a_command(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(ITEMS, flags=REQUIRED)
    about_11 = _our_message(desk, "[CALL#11] me too")  # ada's token, but for call 11
    adas_for_10 = _our_message(desk)  # ada's token for call 10, replayed by bob
    for sender, token in (("ada@example.com", about_11), ("bob@example.com", adas_for_10)):
        result = desk.deliver("Re: [CLOSE#10]", sender=sender, in_reply_to=token)
        assert (result.outcome, result.rule) == ("refused", "command_from_unauthenticated_sender")
    assert desk.call(10)["status"] == "open"


def test_the_messages_of_one_batch_read_the_secrets_once_and_a_later_transaction_again(
    tmp_path: Path,
) -> None:
    from sqlalchemy import event

    from engine.storage.db import batch_transaction, transaction

    engine = open_database(f"sqlite:///{tmp_path / 'desk.sqlite'}")
    engine.dispose()  # new connections, each traced
    reads: list[str] = []

    @event.listens_for(engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(
            lambda sql: reads.append(sql) if "replytokensecret" in sql else None
        )

    with batch_transaction(engine):
        batch = []
        for _ in range(3):  # three messages, each in a savepoint of the batch's transaction
            with transaction(engine) as session:
                batch.append(token_secrets(session))
    assert len(reads) == 1 and batch[0] == batch[1] == batch[2]
    rotate_token_secret(engine, grace=timedelta(days=1))
    reads.clear()
    with transaction(engine) as session:
        after = token_secrets(session)
    assert len(reads) == 1 and after.signing != batch[0].signing  # a new transaction sees the rotation


BOUNDARY = "mx.desk.example"
ENTRY_HOP = (
    "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.desk.example (Postfix)"
    " with ESMTPS id 4Dm0 for <helpdesk@desk.example>; Mon, 2 Mar 2026 09:30:00 +0000"
)


def _through_boundary(subject: str, in_reply_to: str, result: str) -> bytes:
    """Ada's reply as our boundary hands it over, with its DMARC verdict ``result`` for example.com."""
    verdict = f"Authentication-Results: {BOUNDARY}; dkim=none; dmarc={result} header.from=example.com"
    return f"{verdict}\n{ENTRY_HOP}\n".encode() + _raw(subject, "ada@example.com", in_reply_to)


def test_a_token_does_not_outweigh_our_boundarys_dmarc_failure_of_the_from_domain(
    make_desk: MakeDesk,
) -> None:
    trusting = {"trusted_authserv_ids": [BOUNDARY]}
    desk = make_desk(ITEMS, flags=REQUIRED, authentication=trusting)
    ours = _our_message(desk)  # ada's token for call 10, as it travels in any copy of our mail
    forged = desk.deliver_raw(_through_boundary("Re: [CLOSE#10]", ours, "fail (p=reject)"))
    assert (forged.outcome, forged.rule) == ("refused", "command_from_unauthenticated_sender")
    assert forged.reason is not None and "does not outweigh a DMARC failure" in forged.reason
    assert desk.call(10)["status"] == "open"
    # a result that says nothing of forgery (a DNS error at the boundary) leaves the token its proof
    unsure = desk.deliver_raw(_through_boundary("Re: [CLOSE#10]", ours, "temperror"))
    assert (unsure.outcome, unsure.rule) == ("closed", "close_call")

"""Rules 2, 4 and 5: an update-call subject on an open call, an unknown number, an unknown sender."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

CALLS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com,
     assigned_group: Service Desk, summary: Printer jams}
  - {number: 11, status: open, user: ada@example.com, assigned_group: Service Desk, summary: VPN drops}
"""

QUOTED_REPLY = """\
Here is the new detail: it jams on A3 paper only.

On Mon, 2 Mar 2026 at 09:30, Service Desk <helpdesk@desk.example> wrote:
> Call 10 has been updated with your email.
> Kind regards, the service desk
"""


def _our_reply_id(desk: Desk) -> str:
    """Make the desk send ada a message about call 10 and return its Message-ID."""
    desk.deliver("[CALL#10] first update", body="First update.\n")
    return str(desk.outbox_to("ada@example.com")[-1]["message_id"])


def test_update_appends_body_to_history_and_marks_call_updated_by_email(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    result = desk.deliver("Re: [CALL#10] Printer jams", body="It jams again this morning.\n")
    assert (result.outcome, result.rule, result.entity, result.number) == (
        "updated",
        "update_call",
        "call",
        10,
    )
    call = desk.call(10)
    [entry] = desk.texts(call, "email_update")
    assert "It jams again this morning." in entry
    assert call["updated_by_email"] is True
    assert call["status"] == "open"
    [reply] = desk.outbox()
    assert (reply["to"], reply["entity"], reply["number"]) == ("ada@example.com", "call", 10)
    assert "Call 10 has been updated" in reply["subject"]


def test_call_word_forms_update_the_call(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    assert desk.deliver("Re: Call No. 10 printer").number == 10
    assert desk.deliver("Call 11 still dropping").number == 11
    assert desk.call(10)["updated_by_email"] and desk.call(11)["updated_by_email"]


def test_update_attaches_files_with_security_profile_unspecified(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    desk.deliver("[CALL#10] photo", attachments=[("jam.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 jpeg")])
    call = desk.call(10)
    assert [(a["filename"], a["security_profile"]) for a in call["attachments"]] == [
        ("jam.jpg", "Unspecified")
    ]
    [attached] = [h for h in call["history"] if h["kind"] == "attachment"]
    assert attached["security_profile"] == "Unspecified"


def test_update_reply_says_call_has_been_updated_when_auto_reply_is_on(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    desk.deliver("[CALL#10] more", sender="Ada User <ada@example.com>")
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#10] Call 10 has been updated"
    assert "Call 10 has been updated" in reply["body"]


def test_update_sends_no_reply_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"auto_reply": False})
    result = desk.deliver("[CALL#10] more")
    assert result.outcome == "updated"
    assert desk.call(10)["updated_by_email"] is True
    assert desk.outbox() == []


def test_reply_to_our_message_is_truncated_to_the_new_text(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    ours = _our_reply_id(desk)
    desk.deliver("Re: [CALL#10] Call 10 has been updated", body=QUOTED_REPLY, in_reply_to=ours)
    latest = desk.texts(desk.call(10), "email_update")[-1]
    assert "it jams on A3 paper only" in latest
    assert "Kind regards, the service desk" not in latest
    assert "wrote:" not in latest


def test_bottom_posted_reply_to_our_message_keeps_the_text_below_the_quote(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    ours = _our_reply_id(desk)
    body = (
        "Hi,\nOn Mon, 1 Dec 2025 at 10:00, mailgate <helpdesk@desk.example> wrote:\n"
        "> Call 10 has been updated with your email.\n\nThe printer now shows error E42.\n"
    )
    desk.deliver("Re: [CALL#10] Call 10 has been updated", body=body, in_reply_to=ours)
    latest = desk.texts(desk.call(10), "email_update")[-1]
    assert "Hi," in latest
    assert "The printer now shows error E42." in latest
    assert "has been updated with your email" not in latest


def test_mail_naming_our_message_only_in_references_is_truncated(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    ours = _our_reply_id(desk)
    desk.deliver(
        "Re: [CALL#10] Call 10 has been updated", body=QUOTED_REPLY, references=[ours, "x@mail.example"]
    )
    assert "Kind regards, the service desk" not in desk.texts(desk.call(10), "email_update")[-1]


def test_reply_is_kept_whole_when_truncate_incoming_emails_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"truncate_incoming_emails": False})
    ours = _our_reply_id(desk)
    desk.deliver("Re: [CALL#10] Call 10 has been updated", body=QUOTED_REPLY, in_reply_to=ours)
    latest = desk.texts(desk.call(10), "email_update")[-1]
    assert "it jams on A3 paper only" in latest
    assert "Kind regards, the service desk" in latest


def test_mail_not_answering_our_message_is_kept_whole(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    _our_reply_id(desk)
    desk.deliver("Re: [CALL#10] printer", body=QUOTED_REPLY, in_reply_to="someone-else@mail.example")
    latest = desk.texts(desk.call(10), "email_update")[-1]
    assert "Kind regards, the service desk" in latest


def test_update_notifies_the_assigned_analyst_when_email_at_update_is_set(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, email_at_update=True)
    result = desk.deliver("[CALL#10] more", sender="Ada User <ada@example.com>")
    assert [n.to for n in result.notifications] == ["grace@example.com"]
    [note] = desk.outbox_to("grace@example.com")
    assert (note["type"], note["entity"], note["number"]) == ("notify_updated_via_email", "call", 10)
    assert "[CALL#10]" in note["subject"] and "ada@example.com" in note["subject"]
    assert desk.headers_of(note["message_id"])["Auto-Submitted"] == "auto-generated"
    assert len(desk.outbox_to("ada@example.com")) == 1


def test_update_notifies_the_groups_members_when_the_call_has_no_analyst(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, email_at_update=True)
    result = desk.deliver("[CALL#11] more")
    assert sorted(n.to for n in result.notifications) == ["alan@example.com", "grace@example.com"]
    assert len(desk.outbox_to("alan@example.com")) == len(desk.outbox_to("grace@example.com")) == 1
    assert desk.outbox_to("linus@example.com") == []


def test_update_notifies_nobody_when_email_at_update_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, email_at_update=False)
    result = desk.deliver("[CALL#10] more")
    assert result.notifications == ()
    assert [m["to"] for m in desk.outbox()] == ["ada@example.com"]


def test_analyst_updating_their_own_call_is_not_notified_about_it(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, email_at_update=True)
    result = desk.deliver("[CALL#10] I ordered a new drum", sender="grace@example.com")
    assert result.outcome == "updated"
    assert result.notifications == ()
    assert [m["type"] for m in desk.outbox()] == ["call_updated"]


def test_unknown_call_number_logs_new_call_with_log_new_call_on_invalid_number(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"log_new_call_on_invalid_number": True})
    result = desk.deliver("Re: [CALL#999] my old problem", body="Still broken.\n")
    assert (result.outcome, result.rule) == ("logged", "update_unknown_call_logs_call")
    assert result.number not in (None, 999)
    assert not desk.has_call(999)
    call = desk.call(result.number or 0)
    assert call["user"] == "ada@example.com" and "Still broken." in call["description"]
    [reply] = desk.outbox()
    assert reply["subject"] == f"[CALL#{result.number}] Call {result.number} has been logged"


def test_unknown_call_number_is_discarded_without_reply(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("Re: [CALL#999] my old problem")
    assert (result.outcome, result.rule, result.number) == ("ignored", "update_unknown_call_discarded", None)
    assert not desk.has_call(999) and not desk.has_call(12)
    assert desk.outbox() == []


def test_update_from_unknown_sender_is_ignored(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("[CALL#10] let me in", sender="stranger@elsewhere.example")
    assert (result.outcome, result.rule) == ("ignored", "update_call_by_unknown_sender_ignored")
    call = desk.call(10)
    assert call["history"] == [] and call["updated_by_email"] is False
    assert desk.outbox() == []
    assert desk.people("stranger@elsewhere.example") == []


def test_update_from_unknown_sender_applies_with_update_calls_anonymously(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"update_calls_anonymously": True})
    result = desk.deliver(
        "[CALL#10] from the supplier", sender="vendor@supplier.example", body="Part shipped.\n"
    )
    assert (result.outcome, result.rule) == ("updated", "update_call")
    call = desk.call(10)
    assert "Part shipped." in desk.texts(call, "email_update")[0]
    assert call["updated_by_email"] is True
    [reply] = desk.outbox()
    assert reply["to"] == "vendor@supplier.example"

"""Rule 3: an update-call subject naming a closed call: note it, reopen it, or say it is closed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import MakeDesk

CLOSED = """\
calls:
  - {number: 20, status: closed, user: ada@example.com, assigned_analyst: grace@example.com,
     assigned_group: Service Desk, summary: New keyboard}
"""


def test_closed_call_stays_closed_and_gets_a_note_with_update_closed_calls(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CLOSED, flags={"update_closed_calls": True}, database=db_url)
    result = desk.deliver("Re: [CALL#20] New keyboard", body="The new one works, thanks.\n")
    assert (result.outcome, result.rule) == ("noted", "update_closed_call_as_note")
    call = desk.call(20)
    assert call["status"] == "closed"
    [note] = desk.texts(call, "note")
    assert "The new one works, thanks." in note
    [reply] = desk.outbox()
    assert reply["to"] == "ada@example.com"
    assert reply["subject"] == "[CALL#20] Call No 20 has been updated by mailgate."


def test_update_closed_calls_wins_over_reopen_closed_calls(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"update_closed_calls": True, "reopen_closed_calls": True})
    assert desk.deliver("[CALL#20] thanks").outcome == "noted"
    assert desk.call(20)["status"] == "closed"


def test_closed_call_note_attaches_files(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"update_closed_calls": True})
    desk.deliver("[CALL#20] receipt", attachments=[("receipt.pdf", "application/pdf", b"%PDF-1.4 x")])
    assert [a["filename"] for a in desk.call(20)["attachments"]] == ["receipt.pdf"]


def test_closed_call_note_reply_names_the_configured_product(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"update_closed_calls": True}, product_name="Acme Service Desk")
    desk.deliver("[CALL#20] thanks")
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#20] Call No 20 has been updated by Acme Service Desk."


def test_closed_call_is_reopened_to_its_last_analyst_with_reopen_closed_calls(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(
        CLOSED,
        flags={"reopen_closed_calls": True},
        reopen_assign_to="last_analyst",
        call_template={"assigned_group": "Network"},
        database=db_url,
    )
    result = desk.deliver("Re: [CALL#20] New keyboard", body="The Enter key fell off.\n")
    assert (result.outcome, result.rule) == ("reopened", "update_closed_call_reopens_it")
    call = desk.call(20)
    assert call["status"] == "open"
    assert (call["assigned_analyst"], call["assigned_group"]) == ("grace@example.com", "Service Desk")
    assert [h["kind"] for h in call["history"]] == ["reopened", "note"]
    assert "The Enter key fell off." in desk.texts(call, "note")[0]
    assert call["updated_by_email"] is True
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#20] Call 20 has been reopened"


def test_call_closed_by_email_is_reopened_to_the_analyst_it_had(make_desk: MakeDesk) -> None:
    desk = make_desk(
        "calls:\n  - {number: 21, status: open, user: ada@example.com, assigned_analyst: alan@example.com}\n",
        flags={"reopen_closed_calls": True},
    )
    assert desk.deliver("[CLOSE#21]", sender="ada@example.com").outcome == "closed"
    assert desk.call(21)["last_analyst"] == "alan@example.com"
    assert desk.deliver("[CALL#21] it broke again").outcome == "reopened"
    assert (desk.call(21)["status"], desk.call(21)["assigned_analyst"]) == ("open", "alan@example.com")


def test_closed_call_is_reopened_to_the_template_group_with_reopen_assign_to_template_group(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(
        CLOSED,
        flags={"reopen_closed_calls": True},
        reopen_assign_to="template_group",
        call_template={"assigned_group": "Network", "assigned_analyst": "linus@example.com"},
    )
    assert desk.deliver("[CALL#20] broken again").outcome == "reopened"
    call = desk.call(20)
    assert call["status"] == "open"
    assert (call["assigned_group"], call["assigned_analyst"]) == ("Network", None)
    assert "Network" in desk.texts(call, "reopened")[0]


def test_reopen_notifies_the_assignee_when_email_at_update_is_set(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"reopen_closed_calls": True}, email_at_update=True)
    result = desk.deliver("[CALL#20] broken again")
    assert [n.to for n in result.notifications] == ["grace@example.com"]


def test_closed_call_is_not_updated_and_sender_is_told_so_without_either_flag(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED)
    result = desk.deliver("Re: [CALL#20] New keyboard", attachments=[("a.txt", "text/plain", b"x")])
    assert (result.outcome, result.rule) == ("refused", "update_closed_call_refused")
    call = desk.call(20)
    assert call["status"] == "closed"
    assert call["history"] == [] and call["attachments"] == [] and call["updated_by_email"] is False
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#20] Call No 20 is already closed and has not been updated."
    assert "already closed and has not been updated" in reply["body"]


def test_closed_call_from_unknown_sender_is_ignored_silently(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"reopen_closed_calls": True})
    result = desk.deliver("[CALL#20] hi", sender="stranger@elsewhere.example")
    assert result.outcome == "ignored"
    assert desk.call(20)["status"] == "closed"
    assert desk.outbox() == []


def test_reopen_sends_no_confirmation_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(CLOSED, flags={"reopen_closed_calls": True, "auto_reply": False})
    assert desk.deliver("[CALL#20] broken again").outcome == "reopened"
    assert desk.call(20)["status"] == "open"
    assert desk.outbox() == []


def test_closed_call_replies_are_sent_even_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    noting = make_desk(CLOSED, flags={"update_closed_calls": True, "auto_reply": False})
    noting.deliver("[CALL#20] thanks")
    refusing = make_desk(CLOSED, flags={"auto_reply": False})
    refusing.deliver("[CALL#20] thanks")
    assert [m["type"] for m in noting.outbox()] == ["call_updated_closed"]
    assert [m["type"] for m in refusing.outbox()] == ["call_already_closed"]

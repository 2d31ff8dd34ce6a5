"""Rule 6: ``[CLOSE#n]`` closes a call for whoever may close it, and says why not to anyone else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

CALLS = """\
people:
  - {email: both@example.com, name: Both Roles, user: true, analyst: true}
calls:
  - {number: 30, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Mouse}
  - {number: 31, status: open, user: bob@example.com, assigned_analyst: alan@example.com, summary: Dock}
  - {number: 32, status: closed, user: ada@example.com, assigned_analyst: grace@example.com, summary: Old}
  - {number: 33, status: open, user: both@example.com, assigned_analyst: alan@example.com, summary: Own}
"""


def _assert_closed_with_confirmation(desk: Desk, number: int, sender: str) -> None:
    call = desk.call(number)
    assert call["status"] == "closed"
    assert "closed" in [h["kind"] for h in call["history"]]
    [reply] = desk.outbox()
    assert reply["to"] == sender
    assert reply["subject"] == f"[CALL#{number}] Call {number} has been closed"


def _assert_refused_for_permission(desk: Desk, number: int, sender: str) -> None:
    call = desk.call(number)
    assert call["status"] == "open"
    assert call["history"] == []
    [reply] = desk.outbox()
    assert reply["to"] == sender
    assert f"[CALL#{number}]" in reply["subject"]
    assert "Reason: Insufficient Permission" in reply["body"]


def test_user_closes_their_own_call(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(CALLS, database=db_url)
    result = desk.deliver("[CLOSE#30] fixed itself", body="Works now.\n")
    assert (result.outcome, result.rule, result.number) == ("closed", "close_call", 30)
    _assert_closed_with_confirmation(desk, 30, "ada@example.com")
    assert "Works now." in desk.texts(desk.call(30), "email_update")[0]


def test_user_cannot_close_someone_elses_call(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("[CLOSE#30]", sender="bob@example.com")
    assert (result.outcome, result.rule) == ("refused", "close_insufficient_permission")
    _assert_refused_for_permission(desk, 30, "bob@example.com")


def test_analyst_closes_a_call_they_own(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    assert desk.deliver("[CLOSE#30]", sender="grace@example.com").outcome == "closed"
    _assert_closed_with_confirmation(desk, 30, "grace@example.com")


def test_analyst_cannot_close_a_call_they_do_not_own_without_take_over(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    assert desk.deliver("[CLOSE#30]", sender="alan@example.com").outcome == "refused"
    _assert_refused_for_permission(desk, 30, "alan@example.com")


def test_analyst_with_take_over_closes_any_call(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    assert desk.deliver("[CLOSE#31]", sender="linus@example.com").outcome == "closed"
    _assert_closed_with_confirmation(desk, 31, "linus@example.com")


def test_person_who_is_user_and_analyst_closes_the_call_they_are_the_user_of(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    assert desk.deliver("[CLOSE#33]", sender="both@example.com").outcome == "closed"
    assert desk.deliver("[CLOSE#31]", sender="both@example.com").outcome == "refused"


def test_unknown_sender_is_refused_without_close_calls_anonymously(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("[CLOSE#30]", sender="stranger@elsewhere.example")
    assert (result.outcome, result.rule) == ("refused", "close_by_unknown_sender_refused")
    _assert_refused_for_permission(desk, 30, "stranger@elsewhere.example")
    assert desk.people("stranger@elsewhere.example") == []


def test_unknown_sender_closes_with_close_calls_anonymously(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"close_calls_anonymously": True})
    assert desk.deliver("[CLOSE#31]", sender="stranger@elsewhere.example").outcome == "closed"
    _assert_closed_with_confirmation(desk, 31, "stranger@elsewhere.example")


def test_close_calls_anonymously_does_not_widen_a_known_senders_rights(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"close_calls_anonymously": True})
    assert desk.deliver("[CLOSE#30]", sender="bob@example.com").outcome == "refused"
    assert desk.call(30)["status"] == "open"


def test_close_attaches_the_mails_files(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    desk.deliver("[CLOSE#30]", attachments=[("note.txt", "text/plain", b"done")])
    assert [a["filename"] for a in desk.call(30)["attachments"]] == ["note.txt"]


def test_close_confirmation_is_sent_even_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, flags={"auto_reply": False})
    assert desk.deliver("[CLOSE#30]").outcome == "closed"
    _assert_closed_with_confirmation(desk, 30, "ada@example.com")


def test_closing_a_closed_call_gets_the_already_closed_reply(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("[CLOSE#32]")
    assert (result.outcome, result.rule) == ("refused", "close_already_closed_call")
    assert desk.call(32)["history"] == []
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#32] Call No 32 is already closed and has not been updated."


def test_closing_an_unknown_number_is_discarded_without_reply(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("[CLOSE#999]")
    assert (result.outcome, result.rule) == ("ignored", "close_unknown_number_discarded")
    assert desk.outbox() == []
    assert not desk.has_call(999) and not desk.has_call(34)


# a stranger reaches the unknown-number rules only where strangers may close calls (else refused first)
@pytest.mark.parametrize(
    ("sender", "anonymous"), [("ada@example.com", False), ("stranger@elsewhere.example", True)]
)
def test_closing_an_unknown_number_logs_a_call_with_log_new_call_on_invalid_number(
    make_desk: MakeDesk, sender: str, anonymous: bool
) -> None:
    flags = {"log_new_call_on_invalid_number": True, "close_calls_anonymously": anonymous}
    desk = make_desk(CALLS, flags=flags)
    result = desk.deliver("[CLOSE#999] old ticket", sender=sender)
    assert (result.outcome, result.rule, result.number) == ("logged", "close_unknown_number_logs_call", 34)
    assert desk.call(34)["status"] == "open" and desk.call(34)["user"] == sender
    [reply] = desk.outbox()
    assert reply["subject"] == "[CALL#34] Call 34 has been logged"

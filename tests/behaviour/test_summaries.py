"""Rule 9: ``[MyCalls]``, ``[MyRequests]``, ``[MyTasks]``, ``[MyApprovals]`` list an analyst's open items."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

ITEMS = """\
calls:
  - {number: 60, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Mine open}
  - {number: 61, status: closed, user: ada@example.com, assigned_analyst: grace@example.com, summary: Closed}
  - {number: 62, status: open, user: ada@example.com, assigned_analyst: alan@example.com,
     forwarded_by: grace@example.com, forwarded_to: alan@example.com, summary: I forwarded it}
  - {number: 63, status: open, user: bob@example.com, assigned_analyst: linus@example.com,
     forwarded_by: alan@example.com, forwarded_to: grace@example.com, summary: Forwarded to me}
  - {number: 64, status: open, user: bob@example.com, assigned_analyst: alan@example.com, summary: Not mine}
  - {number: 65, status: closed, user: bob@example.com, assigned_analyst: alan@example.com,
     forwarded_by: alan@example.com, forwarded_to: grace@example.com, summary: Forwarded closed}
requests:
  - {number: 70, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Mine open}
  - {number: 71, status: closed, user: ada@example.com, assigned_analyst: grace@example.com, summary: Closed}
  - {number: 72, status: open, user: ada@example.com, assigned_analyst: alan@example.com, summary: Not mine}
tasks:
  - {number: 700, kind: task, status: open, request: 70, assigned_analyst: grace@example.com, summary: Mine}
  - {number: 701, kind: task, status: closed, request: 70, assigned_analyst: grace@example.com, summary: Done}
  - {number: 702, kind: task, status: open, request: 70, assigned_analyst: alan@example.com, summary: Alans}
  - {number: 703, kind: approval, status: open, request: 70, approver: grace@example.com, summary: Approval}
  - {number: 710, kind: approval, status: open, request: 72, approver: fran@example.com, summary: Fran}
  - {number: 711, kind: approval, status: open, request: 72, approver_group: Finance Approvers}
  - {number: 712, kind: approval, status: approved, request: 72, approver: fran@example.com, summary: Done}
  - {number: 713, kind: user_approval, status: open, request: 72, approver: fran@example.com, summary: User}
  - {number: 714, kind: approval, status: open, request: 72, approver: hedy@example.com, summary: Hedys}
  - {number: 715, kind: approval, status: rejected, request: 72, approver_group: Finance Approvers}
"""


def _listed(body: str) -> set[int]:
    """The item numbers a summary lists (each row starts with the number)."""
    return {int(n) for n in re.findall(r"^(\d+)\s", body, re.MULTILINE)}


def _summary(desk: Desk, keyword: str, sender: str) -> dict[str, object]:
    result = desk.deliver(f"[{keyword}]", sender=sender)
    assert (result.outcome, [r.to for r in result.replies]) == ("summary", [sender])
    [reply] = desk.outbox()
    assert reply["type"] == f"summary_{keyword[2:].lower()}"
    return reply


def test_my_calls_lists_open_calls_the_analyst_owns_forwarded_or_was_forwarded(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    reply = _summary(desk, "MyCalls", "grace@example.com")
    assert _listed(str(reply["body"])) == {60, 62, 63}
    assert reply["subject"] == "Your open calls (3)"
    assert "Forwarded to me" in str(reply["body"])


def test_my_requests_lists_open_requests_assigned_to_the_analyst(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    assert _listed(str(_summary(desk, "MyRequests", "grace@example.com")["body"])) == {70}


def test_my_tasks_lists_open_work_tasks_assigned_to_the_analyst(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    assert _listed(str(_summary(desk, "MyTasks", "grace@example.com")["body"])) == {700}


def test_my_approvals_lists_open_approvals_of_the_analyst_and_their_groups(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    assert _listed(str(_summary(desk, "MyApprovals", "fran@example.com")["body"])) == {710, 711, 713}


def test_summary_with_nothing_open_says_so(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    reply = _summary(desk, "MyCalls", "fran@example.com")
    assert _listed(str(reply["body"])) == set()
    assert "You have no open calls." in str(reply["body"])


def test_summary_keyword_is_case_insensitive_and_survives_a_reply_prefix(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    assert desk.deliver("Re: [mycalls]", sender="grace@example.com").outcome == "summary"


def test_summary_changes_nothing_in_the_database(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    before = [desk.call(n) for n in (60, 62, 63)]
    desk.deliver("[MyCalls]", sender="grace@example.com")
    assert [desk.call(n) for n in (60, 62, 63)] == before


@pytest.mark.parametrize("keyword", ["MyCalls", "MyRequests", "MyTasks", "MyApprovals"])
def test_summary_for_unknown_sender_gets_no_reply(make_desk: MakeDesk, keyword: str) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver(f"[{keyword}]", sender="stranger@elsewhere.example")
    assert (result.outcome, result.rule) == ("ignored", "summary_from_unknown_sender")
    assert desk.outbox() == []
    assert desk.people("stranger@elsewhere.example") == []


def test_summary_for_a_user_who_is_no_analyst_is_refused(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver("[MyCalls]", sender="ada@example.com")
    assert (result.outcome, result.rule) == ("refused", "summary_from_non_analyst")
    [reply] = desk.outbox()
    assert "Reason: Insufficient Permission" in reply["body"]
    assert _listed(reply["body"]) == set()


def test_summary_is_sent_even_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS, flags={"auto_reply": False})
    assert _listed(str(_summary(desk, "MyCalls", "grace@example.com")["body"])) == {60, 62, 63}

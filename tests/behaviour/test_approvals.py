"""Rule 7: ``[APPROVE#n]`` / ``[REJECT#n]`` decide approval tasks and move the request's workflow on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

WORKFLOW = """\
requests:
  - {number: 40, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Laptop}
tasks:
  - {number: 400, kind: approval, status: open, request: 40, sequence: 1, approver: fran@example.com}
  - {number: 401, kind: approval, status: open, request: 40, sequence: 1, approver_group: Finance Approvers}
  - {number: 402, kind: task, status: pending, request: 40, sequence: 2, assigned_analyst: grace@example.com}
  - {number: 403, kind: approval, status: pending, request: 40, sequence: 2, approver: hedy@example.com}
  - {number: 404, kind: task, status: pending, request: 40, sequence: 3, assigned_analyst: alan@example.com}
  - {number: 405, kind: user_approval, status: open, sequence: 1, approver: ada@example.com}
  - {number: 406, kind: approval, status: approved, request: 40, sequence: 1, approver: fran@example.com}
  - {number: 407, kind: task, status: open, sequence: 1, assigned_analyst: grace@example.com}
"""


def _statuses(desk: Desk) -> dict[int, str]:
    return {t["number"]: t["status"] for t in desk.request(40)["tasks"]}


def test_approver_approves_task_and_gets_confirmation(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(WORKFLOW, database=db_url)
    result = desk.deliver("[APPROVE#400]", sender="fran@example.com", body="Fine by me.\n")
    assert (result.outcome, result.rule, result.entity, result.number) == (
        "approved",
        "approve_task",
        "task",
        400,
    )
    task = desk.task(400)
    assert task["status"] == "approved"
    assert "Fine by me." in desk.texts(task, "email_update")[0]
    assert desk.texts(task, "approved")
    [reply] = desk.outbox()
    assert reply["to"] == "fran@example.com"
    assert reply["subject"] == "[TASK#400] Task 400 has been successfully approved"


def test_approval_waits_until_the_whole_stage_is_done_then_opens_the_next_sequence(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(WORKFLOW, database=db_url)
    desk.deliver("[APPROVE#400]", sender="fran@example.com")
    assert _statuses(desk) == {
        400: "approved",
        401: "open",
        402: "pending",
        403: "pending",
        404: "pending",
        406: "approved",
    }
    desk.deliver("[APPROVE#401]", sender="hedy@example.com")
    assert _statuses(desk) == {
        400: "approved",
        401: "approved",
        402: "open",
        403: "open",
        404: "pending",
        406: "approved",
    }
    assert "Task 402 opened" in desk.texts(desk.request(40), "task_opened")


def test_group_member_approves_a_task_addressed_to_the_group(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    assert desk.deliver("[APPROVE#401]", sender="hedy@example.com").outcome == "approved"
    assert desk.task(401)["status"] == "approved"


def test_user_approval_is_approved_by_its_user(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    assert desk.deliver("[APPROVE#405]", sender="ada@example.com").outcome == "approved"
    assert desk.task(405)["status"] == "approved"


def test_approver_rejects_task_which_cancels_pending_tasks_and_rejects_the_request(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[REJECT#400]", sender="fran@example.com", body="Too expensive.\n")
    assert (result.outcome, result.rule, result.number) == ("rejected", "reject_task", 400)
    assert desk.request(40)["status"] == "rejected"
    assert _statuses(desk) == {
        400: "rejected",
        401: "cancelled",
        402: "cancelled",
        403: "cancelled",
        404: "cancelled",
        406: "approved",
    }
    assert "Too expensive." in desk.texts(desk.task(400), "email_update")[0]
    [reply] = desk.outbox()
    assert reply["subject"] == "[TASK#400] Task 400 has been successfully rejected"


def test_decision_attaches_the_mails_files_to_the_task(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    desk.deliver(
        "[APPROVE#400]", sender="fran@example.com", attachments=[("quote.pdf", "application/pdf", b"%PDF")]
    )
    task = desk.task(400)
    assert [(a["filename"], a["security_profile"]) for a in task["attachments"]] == [
        ("quote.pdf", "Unspecified")
    ]


@pytest.mark.parametrize("command", ["APPROVE", "REJECT"])
def test_unknown_sender_does_not_decide_and_is_told_they_were_not_identified(
    make_desk: MakeDesk, command: str
) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver(f"[{command}#400]", sender="stranger@elsewhere.example")
    assert (result.outcome, result.rule) == ("refused", "decide_by_unidentified_sender")
    assert desk.task(400)["status"] == "open" and desk.task(400)["history"] == []
    [reply] = desk.outbox()
    assert reply["to"] == "stranger@elsewhere.example"
    assert "[TASK#400]" in reply["subject"]
    assert "stranger@elsewhere.example could not be identified" in reply["body"]


@pytest.mark.parametrize("command", ["APPROVE", "REJECT"])
def test_known_sender_who_is_not_the_approver_gets_insufficient_permission(
    make_desk: MakeDesk, command: str
) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver(f"[{command}#400]", sender="grace@example.com")
    assert (result.outcome, result.rule) == ("refused", "decide_by_non_approver")
    assert desk.task(400)["status"] == "open"
    assert desk.request(40)["status"] == "open"
    [reply] = desk.outbox()
    assert "Reason: Insufficient Permission" in reply["body"]


def test_analyst_outside_the_approver_group_cannot_decide_the_groups_task(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[APPROVE#401]", sender="grace@example.com")
    assert (result.outcome, result.rule) == ("refused", "decide_by_non_approver")
    assert desk.task(401)["status"] == "open"


def test_non_approver_is_refused_before_learning_the_task_was_decided(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[REJECT#406]", sender="grace@example.com")
    assert result.rule == "decide_by_non_approver"
    [reply] = desk.outbox()
    assert "Reason: Insufficient Permission" in reply["body"]


@pytest.mark.parametrize("command", ["APPROVE", "REJECT"])
def test_already_decided_task_is_not_changed_and_sender_is_told(make_desk: MakeDesk, command: str) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver(f"[{command}#406]", sender="fran@example.com")
    assert (result.outcome, result.rule) == ("refused", "decide_already_decided_task")
    assert desk.task(406)["status"] == "approved" and desk.task(406)["history"] == []
    assert desk.request(40)["status"] == "open"
    [reply] = desk.outbox()
    assert reply["subject"] == "[TASK#406] Task 406 has already been decided"
    assert "already been approved" in reply["body"]


def test_second_decision_on_the_same_task_is_refused(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    desk.deliver("[APPROVE#400]", sender="fran@example.com")
    assert desk.deliver("[REJECT#400]", sender="fran@example.com").rule == "decide_already_decided_task"
    assert desk.task(400)["status"] == "approved" and desk.request(40)["status"] == "open"


def test_task_not_yet_active_cannot_be_decided(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[APPROVE#403]", sender="hedy@example.com")
    assert (result.outcome, result.rule) == ("refused", "decide_task_not_yet_active")
    assert desk.task(403)["status"] == "pending"
    assert "[TASK#403]" in desk.outbox()[0]["subject"]


def test_plain_task_cannot_be_approved(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[APPROVE#407]", sender="grace@example.com")
    assert (result.outcome, result.rule) == ("refused", "decide_task_that_is_not_an_approval")
    assert desk.task(407)["status"] == "open"
    assert "is not an approval" in desk.outbox()[0]["subject"]


def test_unknown_sender_learns_nothing_about_a_plain_task(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver("[APPROVE#407]", sender="stranger@example.org")
    assert (result.outcome, result.rule) == ("refused", "decide_by_unidentified_sender")
    assert "has not been decided" in desk.outbox()[0]["subject"]


def test_decision_confirmation_is_sent_even_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(WORKFLOW, flags={"auto_reply": False})
    desk.deliver("[APPROVE#400]", sender="fran@example.com")
    assert [m["subject"] for m in desk.outbox()] == ["[TASK#400] Task 400 has been successfully approved"]


@pytest.mark.parametrize("command", ["APPROVE", "REJECT"])
def test_deciding_an_unknown_task_logs_a_new_call(make_desk: MakeDesk, command: str) -> None:
    desk = make_desk(WORKFLOW)
    result = desk.deliver(f"[{command}#999] laptop", sender="fran@example.com")
    assert (result.outcome, result.rule, result.entity) == ("logged", "decide_unknown_task_logs_call", "call")
    assert desk.call(result.number or 0)["user"] == "fran@example.com"

"""Rule 8: updating a request, a task or an approval by email; unknown numbers log a new call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import MakeDesk

ITEMS = """\
requests:
  - {number: 50, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Phone}
tasks:
  - {number: 500, kind: task, status: open, request: 50, sequence: 1, assigned_analyst: alan@example.com}
  - {number: 501, kind: approval, status: open, request: 50, sequence: 1, approver: fran@example.com}
"""

QUOTED = """\
Model X please.

On Mon, 2 Mar 2026 at 09:30, Service Desk <helpdesk@desk.example> wrote:
> Task/Approval 500 has been updated with your email.
> Kind regards, the service desk
"""


def test_update_request_adds_history_and_replies_request_has_been_updated(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    result = desk.deliver("Re: [REQ#50] Phone", body="Any colour is fine.\n")
    assert (result.outcome, result.rule, result.entity, result.number) == (
        "updated",
        "update_request",
        "request",
        50,
    )
    request = desk.request(50)
    assert "Any colour is fine." in desk.texts(request, "email_update")[0]
    assert request["updated_by_email"] is True
    [reply] = desk.outbox()
    assert (reply["to"], reply["entity"], reply["number"]) == ("ada@example.com", "request", 50)
    assert reply["subject"] == "[REQ#50] Request 50 has been updated"


def test_request_word_form_updates_the_request(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    assert desk.deliver("About Request 50").rule == "update_request"


def test_update_task_adds_history_attaches_and_replies_task_approval_has_been_updated(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver(
        "[TASK#500] progress",
        sender="alan@example.com",
        body="Ordered.\n",
        attachments=[("order.pdf", "application/pdf", b"%PDF")],
    )
    assert (result.outcome, result.rule, result.entity, result.number) == (
        "updated",
        "update_task",
        "task",
        500,
    )
    task = desk.task(500)
    assert "Ordered." in desk.texts(task, "email_update")[0]
    assert [(a["filename"], a["security_profile"]) for a in task["attachments"]] == [
        ("order.pdf", "Unspecified")
    ]
    assert task["updated_by_email"] is True and task["status"] == "open"
    [reply] = desk.outbox()
    assert reply["subject"] == "[TASK#500] Task/Approval 500 has been updated"


@pytest.mark.parametrize("subject", ["Approval 501 question", "[APPROVAL#501] question", "Task/Approval 501"])
def test_update_approval_updates_the_task_without_deciding_it(make_desk: MakeDesk, subject: str) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver(subject, sender="fran@example.com")
    assert (result.rule, result.number) == ("update_task", 501)
    assert desk.task(501)["status"] == "open"
    assert desk.outbox()[0]["subject"] == "[TASK#501] Task/Approval 501 has been updated"


@pytest.mark.parametrize("subject", ["[REQ#50] x", "[TASK#500] x"])
def test_request_and_task_updates_send_no_reply_when_auto_reply_is_off(
    make_desk: MakeDesk, subject: str
) -> None:
    desk = make_desk(ITEMS, flags={"auto_reply": False})
    assert desk.deliver(subject).outcome == "updated"
    assert desk.outbox() == []


@pytest.mark.parametrize(
    ("subject", "analyst"), [("[REQ#50] x", "grace@example.com"), ("[TASK#500] x", "alan@example.com")]
)
def test_request_and_task_updates_notify_the_assignee_when_email_at_update_is_set(
    make_desk: MakeDesk, subject: str, analyst: str
) -> None:
    desk = make_desk(ITEMS, email_at_update=True)
    result = desk.deliver(subject)
    assert [n.to for n in result.notifications] == [analyst]
    [note] = desk.outbox_to(analyst)
    assert note["type"] == "notify_updated_via_email"


def test_task_update_replying_to_our_message_is_truncated(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    desk.deliver("[TASK#500] first")
    ours = desk.outbox()[-1]["message_id"]
    desk.deliver("Re: [TASK#500] Task/Approval 500 has been updated", body=QUOTED, in_reply_to=ours)
    latest = desk.texts(desk.task(500), "email_update")[-1]
    assert "Model X please." in latest and "Kind regards" not in latest


@pytest.mark.parametrize("flag", [False, True])
@pytest.mark.parametrize("subject", ["[REQ#999] new phone", "Request 999", "[TASK#999] x", "Approval 999"])
def test_unknown_request_or_task_number_always_logs_a_new_call(
    make_desk: MakeDesk, subject: str, flag: bool
) -> None:
    desk = make_desk(ITEMS, flags={"log_new_call_on_invalid_number": flag})
    result = desk.deliver(subject, body="Please help.\n")
    assert (result.outcome, result.rule, result.entity) == (
        "logged",
        "update_unknown_request_or_task_logs_call",
        "call",
    )
    call = desk.call(result.number or 0)
    assert call["user"] == "ada@example.com" and "Please help." in call["description"]
    [reply] = desk.outbox()
    assert reply["subject"] == f"[CALL#{result.number}] Call {result.number} has been logged"


@pytest.mark.parametrize("subject", ["[REQ#50] x", "[TASK#500] x"])
def test_request_or_task_update_from_unknown_sender_is_ignored(make_desk: MakeDesk, subject: str) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver(subject, sender="stranger@elsewhere.example")
    assert (result.outcome, result.rule) == ("ignored", "update_request_or_task_by_unknown_sender_ignored")
    assert desk.request(50)["history"] == [] and desk.task(500)["history"] == []
    assert desk.outbox() == []

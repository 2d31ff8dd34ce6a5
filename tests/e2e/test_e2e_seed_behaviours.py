"""Every seed behaviour of the default pack, end to end: a mail APPENDed to Dovecot, one pass of the
service over IMAP or POP3 (TLS, the harness CA as ``ca_file``), the effects read from the SQLite file.

The first tests run the pass in-process (``serve(runtime, once=True)``, what ``mailgate run --once``
calls); the last runs the real console script over a mailbox holding one mail of every outcome.
"""

from __future__ import annotations

import re

from e2e_desk import (
    Desk,
    Mailbox,
    MakeDesk,
    account_yaml,
    connector_yaml,
    events,
    fatal_bounce,
    mail,
    without_sender,
)

from engine.service import PassReport


def _desk(make_desk: MakeDesk, mailbox: Mailbox, protocol: str) -> Desk:
    return make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol)))


def _one_pass(desk: Desk, mailbox: Mailbox, protocol: str, raw: bytes) -> dict[str, object]:
    """Append one mail, run one pass; check it was read through the protocol and left the mailbox."""
    mailbox.append(raw)
    [report] = desk.run_once()
    assert isinstance(report, PassReport) and report.error is None, report
    assert report.processed == 1
    assert mailbox.count() == 0
    [entry] = desk.ledger()
    assert str(entry["detail"]["origin"]).startswith(f"{protocol}:")  # type: ignore[index]
    return entry


def test_a_new_mail_becomes_a_call_with_a_reply_in_the_outbox(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    entry = _one_pass(desk, mailbox, protocol, mail("Scanner on floor 3 is offline", message_id="n1@ex"))
    assert (entry["outcome"], entry["rule"], entry["entity"]) == ("logged", "log_new_call", "call")
    number = int(str(entry["number"]))
    call = desk.call(number)
    assert (call["status"], call["user"], call["summary"]) == (
        "open",
        "ada@example.com",
        "Scanner on floor 3 is offline",
    )
    assert [(m["to"], m["type"], m["subject"]) for m in desk.outbox()] == [
        ("ada@example.com", "call_logged", f"[CALL#{number}] Call {number} has been logged")
    ]


def test_a_reply_naming_a_call_updates_it(make_desk: MakeDesk, mailbox: Mailbox, protocol: str) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    raw = mail("Re: [CALL#10] Printer jams", message_id="u1@ex", body="It jams on A3 paper too.\n")
    entry = _one_pass(desk, mailbox, protocol, raw)
    assert (entry["outcome"], entry["rule"], entry["number"]) == ("updated", "update_call", 10)
    call = desk.call(10)
    assert call["updated_by_email"] is True
    assert [h["kind"] for h in call["history"]] == ["email_update"]
    assert "It jams on A3 paper too." in call["history"][0]["text"]
    assert desk.new_calls() == []
    assert [(m["to"], m["subject"]) for m in desk.outbox()] == [
        ("ada@example.com", "[CALL#10] Call 10 has been updated")
    ]


def test_close_command_closes_the_call(make_desk: MakeDesk, mailbox: Mailbox, protocol: str) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    entry = _one_pass(desk, mailbox, protocol, mail("[CLOSE#11] works again", message_id="c1@ex"))
    assert (entry["outcome"], entry["rule"], entry["number"]) == ("closed", "close_call", 11)
    call = desk.call(11)
    assert call["status"] == "closed"
    assert "closed" in [h["kind"] for h in call["history"]]
    assert [(m["to"], m["subject"]) for m in desk.outbox()] == [
        ("ada@example.com", "[CALL#11] Call 11 has been closed")
    ]


def test_approval_decides_the_task_and_moves_the_workflow_on(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    raw = mail("[APPROVE#400]", "fran@example.com", message_id="a1@ex", body="Fine by me.\n")
    entry = _one_pass(desk, mailbox, protocol, raw)
    assert (entry["outcome"], entry["rule"], entry["entity"], entry["number"]) == (
        "approved",
        "approve_task",
        "task",
        400,
    )
    assert {t["number"]: t["status"] for t in desk.request(40)["tasks"]} == {400: "approved", 401: "open"}
    assert desk.task(400)["status"] == "approved"
    assert any("Task 401 opened" in h["text"] for h in desk.request(40)["history"])
    assert [(m["to"], m["subject"]) for m in desk.outbox()] == [
        ("fran@example.com", "[TASK#400] Task 400 has been successfully approved")
    ]


def test_my_calls_sends_the_analyst_a_summary(make_desk: MakeDesk, mailbox: Mailbox, protocol: str) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    entry = _one_pass(desk, mailbox, protocol, mail("[MyCalls]", "grace@example.com", message_id="s1@ex"))
    assert (entry["outcome"], entry["rule"]) == ("summary", "summary_of_calls")
    [summary] = desk.outbox()
    assert (summary["to"], summary["type"]) == ("grace@example.com", "summary_calls")
    assert {int(n) for n in re.findall(r"^(\d+)\s", str(summary["body"]), re.MULTILINE)} == {10, 11}


def test_a_fatal_bounce_is_deleted_without_reply(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    entry = _one_pass(desk, mailbox, protocol, fatal_bounce("b1@mx.example.net"))
    assert (entry["outcome"], entry["rule"], entry["number"]) == (
        "bounce_deleted",
        "delete_fatal_bounce",
        None,
    )
    assert desk.new_calls() == []
    assert desk.outbox() == []


def test_auto_submitted_mail_logs_a_call_without_reply(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = _desk(make_desk, mailbox, protocol)
    raw = mail(
        "Automatic reply: away until Monday",
        "bob@example.com",
        message_id="o1@ex",
        headers={"Auto-Submitted": "auto-replied"},
    )
    entry = _one_pass(desk, mailbox, protocol, raw)
    assert (entry["outcome"], entry["rule"]) == ("logged", "log_new_call")
    assert desk.new_calls() == [(entry["number"], "Automatic reply: away until Monday")]
    assert desk.outbox() == []


def test_run_once_empties_a_mailbox_holding_every_outcome(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    """The console script: every outcome is acknowledged, quarantined and duplicate included."""
    desk = _desk(make_desk, mailbox, protocol)
    mailbox.append(
        mail("Scanner is offline", message_id="m1@ex"),
        mail("Re: [CALL#10] Printer jams", message_id="m2@ex"),
        mail("[CLOSE#11]", message_id="m3@ex"),
        mail("[APPROVE#400]", "fran@example.com", message_id="m4@ex"),
        mail("[MyCalls]", "grace@example.com", message_id="m5@ex"),
        fatal_bounce("m6@mx.example.net"),
        mail(
            "Out of office", "bob@example.com", message_id="m7@ex", headers={"Auto-Submitted": "auto-replied"}
        ),
        without_sender("m8@ex"),
        mail("Scanner is offline", message_id="m1@ex"),  # the same mail delivered again: a duplicate
    )
    assert mailbox.count() == 9

    done = desk.mailgate("-v", "run", "--once")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "helpdesk: 9 processed (1 approved, 1 bounce_deleted, 1 closed, 1 duplicate, 2 logged, "
        "1 quarantined, 1 summary, 1 updated)"
    ]
    assert mailbox.count() == 0
    outcomes = [
        "logged",
        "updated",
        "closed",
        "approved",
        "summary",
        "bounce_deleted",
        "logged",
        "quarantined",
    ]
    processed = events(done.stderr, "processed")
    assert [(e["account"], e["outcome"]) for e in processed] == [
        ("helpdesk", o) for o in [*outcomes, "duplicate"]
    ]
    assert [e["key"] for e in processed][-1] == "m1@ex"
    assert [e["outcome"] for e in desk.ledger()] == outcomes
    [held] = desk.quarantine()
    assert (held["account"], held["message_key"], held["status"]) == ("helpdesk", "m8@ex", "held")
    assert "From header missing" in held["reason"]
    assert [summary for _, summary in desk.new_calls()] == ["Scanner is offline", "Out of office"]
    assert sorted(m["to"] for m in desk.outbox()) == [
        "ada@example.com",
        "ada@example.com",
        "ada@example.com",
        "fran@example.com",
        "grace@example.com",
    ]
    [polled] = events(done.stderr, "polled")
    assert (polled["account"], polled["processed"]) == ("helpdesk", "9")
    status = desk.status()["helpdesk"]
    assert (status["state"], status["processed"], status["last_error"]) == ("ok", 9, None)

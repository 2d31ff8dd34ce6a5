"""Rule 1: a mail whose subject names nothing logs a new call from the account's call template."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import MakeDesk

TEMPLATE = {
    "partition": "Europe",
    "screen_set": "Email Calls",
    "ipk_status": "New",
    "ipk_stream": "Incident",
    "assigned_analyst": "grace@example.com",
    "assigned_group": "Service Desk",
}


def test_unrecognised_subject_logs_call_copying_every_template_field(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(call_template=TEMPLATE, database=db_url)
    result = desk.deliver("Printer on floor 3 is jammed", sender="Ada User <ada@example.com>")
    assert (result.outcome, result.rule, result.entity) == ("logged", "log_new_call", "call")
    call = desk.call(result.number or 0)
    assert call["status"] == "open"
    assert call["summary"] == "Printer on floor 3 is jammed"
    assert (call["partition"], call["screen_set"]) == ("Europe", "Email Calls")
    assert (call["ipk_status"], call["ipk_stream"]) == ("New", "Incident")
    assert (call["assigned_analyst"], call["assigned_group"]) == ("grace@example.com", "Service Desk")
    assert call["user"] == "ada@example.com"
    assert [h["kind"] for h in call["history"]] == ["logged"]
    [reply] = desk.outbox()
    assert reply["to"] == "ada@example.com"
    assert reply["subject"] == f"[CALL#{result.number}] Call {result.number} has been logged"
    assert (reply["entity"], reply["number"]) == ("call", result.number)


def test_body_becomes_the_description(make_desk: MakeDesk) -> None:
    desk = make_desk()
    body = "My screen flickers.\n\nIt started after the update on Monday.\n"
    result = desk.deliver("Screen flickers", body=body)
    assert desk.call(result.number or 0)["description"].strip() == body.strip()


def test_call_without_template_has_no_assignment(make_desk: MakeDesk) -> None:
    desk = make_desk()
    call = desk.call(desk.deliver("Screen flickers").number or 0)
    assert (call["assigned_analyst"], call["assigned_group"], call["partition"]) == (None, None, None)


def test_known_sender_is_the_calls_user_and_no_person_is_added(make_desk: MakeDesk) -> None:
    desk = make_desk()
    result = desk.deliver("Keyboard missing keys", sender="BOB@Example.com")
    assert desk.call(result.number or 0)["user"] == "bob@example.com"
    assert len(desk.people("bob@example.com")) == 1


def test_first_person_on_record_is_used_when_several_share_the_address(make_desk: MakeDesk) -> None:
    desk = make_desk()
    desk.add_person("Shared@Example.com", "First Holder")
    desk.add_person("shared@example.com", "Second Holder")
    result = desk.deliver("Shared mailbox problem", sender="shared@example.com")
    assert desk.call(result.number or 0)["user"] == "Shared@Example.com"
    assert len(desk.people("shared@example.com")) == 2


def test_unknown_sender_gets_new_person_flagged_user(make_desk: MakeDesk) -> None:
    desk = make_desk()
    result = desk.deliver("Cannot log in", sender="Nina New <nina@newcomer.example>")
    [person] = desk.people("nina@newcomer.example")
    assert (person.name, person.is_user, person.is_analyst, person.take_over) == (
        "Nina New",
        True,
        False,
        False,
    )
    call = desk.call(result.number or 0)
    assert call["user"] == "nina@newcomer.example"
    assert call["logging_analyst"] == "nina@newcomer.example"
    [reply] = desk.outbox()
    assert reply["to"] == "nina@newcomer.example"


def test_logging_analyst_is_the_sending_analyst_with_use_linked_analyst(make_desk: MakeDesk) -> None:
    desk = make_desk(flags={"use_linked_analyst": True}, default_logging_analyst="linus@example.com")
    result = desk.deliver("Switch in room 4 is down", sender="grace@example.com")
    assert desk.call(result.number or 0)["logging_analyst"] == "grace@example.com"


def test_logging_analyst_is_the_default_when_the_sender_is_no_analyst(make_desk: MakeDesk) -> None:
    desk = make_desk(flags={"use_linked_analyst": True}, default_logging_analyst="linus@example.com")
    result = desk.deliver("Switch in room 4 is down", sender="ada@example.com")
    call = desk.call(result.number or 0)
    assert (call["logging_analyst"], call["user"]) == ("linus@example.com", "ada@example.com")


def test_logging_analyst_is_the_default_when_use_linked_analyst_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(default_logging_analyst="linus@example.com")
    result = desk.deliver("Switch in room 4 is down", sender="grace@example.com")
    assert desk.call(result.number or 0)["logging_analyst"] == "linus@example.com"


def test_logging_analyst_is_the_sender_when_there_is_no_default(make_desk: MakeDesk) -> None:
    desk = make_desk()
    result = desk.deliver("Switch in room 4 is down", sender="grace@example.com")
    assert desk.call(result.number or 0)["logging_analyst"] == "grace@example.com"


def test_attachments_become_objects_with_security_profile_unspecified(make_desk: MakeDesk) -> None:
    desk = make_desk()
    files = [
        ("error.png", "image/png", b"\x89PNG\r\n\x1a\nfake"),
        ("log.txt", "text/plain", b"line 1\nline 2\n"),
    ]
    result = desk.deliver("Application crashes", attachments=files)
    call = desk.call(result.number or 0)
    assert [(a["filename"], a["size"], a["security_profile"]) for a in call["attachments"]] == [
        ("error.png", 12, "Unspecified"),
        ("log.txt", 14, "Unspecified"),
    ]
    attached = [h for h in call["history"] if h["kind"] == "attachment"]
    assert len(attached) == 2
    assert {h["security_profile"] for h in attached} == {"Unspecified"}
    assert "error.png" in attached[0]["text"] and "log.txt" in attached[1]["text"]


def test_new_call_gets_no_logged_reply_when_auto_reply_is_off(make_desk: MakeDesk) -> None:
    desk = make_desk(flags={"auto_reply": False})
    result = desk.deliver("Printer on floor 3 is jammed")
    assert result.outcome == "logged"
    assert desk.has_call(result.number or 0)
    assert desk.outbox() == []


def test_html_only_mail_logs_call_with_its_text(make_desk: MakeDesk) -> None:
    desk = make_desk()
    raw = (
        b"From: ada@example.com\r\nTo: helpdesk@desk.example\r\nSubject: Monitor dead\r\n"
        b"Message-ID: <html-only@mail.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>The monitor shows <b>nothing</b>.</p></body></html>\r\n"
    )
    result = desk.deliver_raw(raw)
    assert result.outcome == "logged"
    assert "The monitor shows nothing" in " ".join(desk.call(result.number or 0)["description"].split())


def test_calls_are_numbered_after_the_highest_existing_call(make_desk: MakeDesk) -> None:
    desk = make_desk("calls:\n  - {number: 41, status: open, user: ada@example.com}\n")
    first = desk.deliver("One")
    second = desk.deliver("Two")
    assert (first.number, second.number) == (42, 43)

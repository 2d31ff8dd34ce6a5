"""The reply loop end to end, with only real parts: a customer's mail APPENDed to the session's
Dovecot, the ``mailgate run --once`` console script reading it over IMAP (TLS, the harness CA) and
sending its answer through a real SMTP server on loopback (aiosmtpd, ``tests/outgoing/
smtp_test_server.py``), the customer answering the bytes that server received, and the effects
read back from the SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from e2e_desk import Desk, Mailbox, MakeDesk, account_yaml, connector_yaml, mail
from outgoing.smtp_test_server import Arrival, RecordingHandler, SmtpServer

CUSTOMER = "ada@example.com"
DESK_FROM = "E2E Desk <helpdesk@example.com>"  # product_name <account address>


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on a free loopback port, recording every message that arrives."""
    server = SmtpServer(RecordingHandler(), 0)
    yield server
    server.stop()


def _desk(make_desk: MakeDesk, mailbox: Mailbox, server: SmtpServer) -> Desk:
    """A desk reading ``mailbox`` over IMAP and sending through ``server``, retrying without delay."""
    outgoing = (  # a top-level section: build_desk puts the accounts list last in the config
        "outgoing:\n"
        "  servers:\n"
        f"    - {{name: main, host: {server.host}, port: {server.port}, security: plain, timeout: 10}}\n"
        "  retry_delay_seconds: 0\n"
    )
    return make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")) + outgoing)


def _run_once(desk: Desk, expected: str) -> None:
    """``mailgate run --once`` as a subprocess: it must succeed and print ``expected``."""
    done = desk.mailgate("run", "--once")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [expected], done.stderr


def _log_call(desk: Desk, mailbox: Mailbox, server: SmtpServer) -> tuple[int, Arrival]:
    """The customer's first mail becomes a call; return its number and the reply that arrived."""
    mailbox.append(mail("Printer on floor 3 jams", message_id="first@mail.example"))
    _run_once(desk, "helpdesk: 1 processed (1 logged)")
    [(number, _)] = desk.new_calls()
    [reply] = server.handler.arrived
    return number, reply


def _answer(
    ours: Arrival,
    new_text: str,
    *,
    message_id: str,
    prefix: str = "Re: ",
    headers: dict[str, str] | None = None,
) -> bytes:
    """The customer's answer to a message we sent, built from the bytes the SMTP server received:
    new text on top, our text quoted below an "On ... wrote:" line, threaded to our Message-ID."""
    received = ours.message
    quoted = "\n".join(f"> {line}".rstrip() for line in ours.part("plain").splitlines())
    msg = EmailMessage()
    msg["From"] = f"Ada User <{CUSTOMER}>"
    msg["To"] = str(received["From"])
    msg["Subject"] = prefix + str(received["Subject"])
    msg["Date"] = "Mon, 02 Mar 2026 10:15:00 +0000"
    msg["Message-ID"] = f"<{message_id}>"
    msg["In-Reply-To"] = str(received["Message-ID"])
    msg["References"] = f"{received['References'] or ''} {received['Message-ID']}".strip()
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(f"{new_text}\n\nOn Mon, 2 Mar 2026 at 09:31, {received['From']} wrote:\n{quoted}\n")
    return msg.as_bytes()


def test_run_once_logs_the_call_and_delivers_its_reply_threaded_with_loop_headers(
    make_desk: MakeDesk, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    desk = _desk(make_desk, mailbox, smtp_server)

    number, reply = _log_call(desk, mailbox, smtp_server)

    received = reply.message
    assert (reply.mail_from, reply.rcpt_tos) == ("helpdesk@example.com", (CUSTOMER,))
    assert (received["From"], received["To"]) == (DESK_FROM, CUSTOMER)
    assert received["Subject"] == f"[CALL#{number}] Call {number} has been logged"
    assert received["Auto-Submitted"] == "auto-replied"
    assert received["X-Auto-Response-Suppress"] == "All"
    assert received["In-Reply-To"] == "<first@mail.example>"
    assert f"logged as call {number}: Printer on floor 3 jams" in reply.part("plain")
    assert f"logged as call {number}: Printer on floor 3 jams" in reply.part("html")
    [row] = desk.outbox()
    assert (row["status"], row["attempts"], row["sent_via"]) == ("sent", 1, "main")
    assert str(row["server_reply"]).startswith("250")
    assert f"<{row['message_id']}>" == received["Message-ID"]
    assert mailbox.count() == 0


def test_answering_the_delivered_reply_updates_the_same_call_with_only_the_new_text(
    make_desk: MakeDesk, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    desk = _desk(make_desk, mailbox, smtp_server)
    number, logged = _log_call(desk, mailbox, smtp_server)
    mailbox.append(_answer(logged, "It now shows error E42 as well.", message_id="answer@mail.example"))

    _run_once(desk, "helpdesk: 1 processed (1 updated)")

    assert [n for n, _ in desk.new_calls()] == [number]  # no second call
    entry = desk.ledger()[-1]
    assert (entry["outcome"], entry["entity"], entry["number"]) == ("updated", "call", number)
    call = desk.call(number)
    assert call["updated_by_email"] is True
    update = call["history"][-1]
    assert update["kind"] == "email_update"
    assert "It now shows error E42 as well." in update["text"]
    assert "wrote:" not in update["text"]  # the quoted reply is cut off: it answers our message
    assert "Thank you for contacting" not in update["text"]
    assert len(smtp_server.handler.arrived) == 2
    updated = smtp_server.handler.arrived[1]
    received = updated.message
    assert (updated.rcpt_tos, received["From"]) == ((CUSTOMER,), DESK_FROM)
    assert received["Subject"] == f"[CALL#{number}] Call {number} has been updated"
    assert received["In-Reply-To"] == "<answer@mail.example>"
    assert received["Auto-Submitted"] == "auto-replied"
    assert f"Call {number} has been updated with your email." in updated.part("plain")
    assert f"Call {number} has been updated with your email." in updated.part("html")
    assert [m["status"] for m in desk.outbox()] == ["sent", "sent"]


def test_a_250_character_message_id_threads_unencoded_and_the_answer_updates_the_same_call(
    make_desk: MakeDesk, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    long_id = ("AM0PR07MB6418" + "D2F1A9C3E5B7" * 20)[:225] + "@EURP190.PROD.OUTLOOK.COM"
    desk = _desk(make_desk, mailbox, smtp_server)
    first = mail("Printer on floor 3 jams", message_id="short@mail.example").replace(
        b"<short@mail.example>", f"<{long_id}>".encode()
    )  # written byte by byte: the stdlib's writer would fold the long id into encoded words
    mailbox.append(first)
    _run_once(desk, "helpdesk: 1 processed (1 logged)")
    [(number, _)] = desk.new_calls()
    [ours] = smtp_server.handler.arrived

    head = ours.data.split(b"\r\n\r\n", 1)[0]
    assert f"\r\nIn-Reply-To: <{long_id}>\r\n".encode() in head
    assert f"\r\nReferences: <{long_id}>\r\n".encode() in head
    mailbox.append(_answer(ours, "It now shows error E42.", message_id="answer@mail.example"))

    _run_once(desk, "helpdesk: 1 processed (1 updated)")

    assert [n for n, _ in desk.new_calls()] == [number]
    entry = desk.ledger()[-1]
    assert (entry["outcome"], entry["entity"], entry["number"]) == ("updated", "call", number)
    assert "It now shows error E42." in desk.call(number)["history"][-1]["text"]


def test_an_out_of_office_answer_to_the_delivered_reply_updates_the_call_but_gets_no_reply(
    make_desk: MakeDesk, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    desk = _desk(make_desk, mailbox, smtp_server)
    number, logged = _log_call(desk, mailbox, smtp_server)
    out_of_office = _answer(
        logged,
        "I am out of the office until Monday.",
        message_id="away@mail.example",
        prefix="Automatic reply: ",
        headers={"Auto-Submitted": "auto-replied"},
    )
    mailbox.append(out_of_office)

    _run_once(desk, "helpdesk: 1 processed (1 updated)")

    assert [n for n, _ in desk.new_calls()] == [number]
    assert "I am out of the office until Monday." in desk.call(number)["history"][-1]["text"]
    entry = desk.ledger()[-1]
    assert (entry["outcome"], entry["number"]) == ("updated", number)
    [reason] = entry["detail"]["not_answered"]
    assert reason.startswith("the mail was sent by a machine")
    assert len(smtp_server.handler.arrived) == 1  # no answer to the machine: no loop
    assert len(desk.outbox()) == 1


def test_a_4xx_answer_defers_the_reply_and_a_later_run_delivers_it(
    make_desk: MakeDesk, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    desk = _desk(make_desk, mailbox, smtp_server)
    smtp_server.handler.answers[CUSTOMER] = ["451 4.3.0 Mailbox busy, try again later"]
    mailbox.append(mail("Scanner is offline", message_id="scan@mail.example"))

    _run_once(desk, "helpdesk: 1 processed (1 logged)")

    assert smtp_server.handler.arrived == []
    [row] = desk.outbox()
    assert (row["status"], row["attempts"]) == ("deferred", 1)
    assert "451" in str(row["last_error"])

    _run_once(desk, "helpdesk: 0 processed")  # no new mail; the outbox is drained all the same

    [row] = desk.outbox()
    assert (row["status"], row["attempts"]) == ("sent", 2)
    [arrival] = smtp_server.handler.arrived
    [(number, _)] = desk.new_calls()
    assert arrival.message["Subject"] == f"[CALL#{number}] Call {number} has been logged"
    assert f"<{row['message_id']}>" == arrival.message["Message-ID"]

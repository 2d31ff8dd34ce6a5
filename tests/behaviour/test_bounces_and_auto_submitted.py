"""Rule 10: fatal bounces are deleted at once; machine-sent mail is processed but never answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

CALLS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
"""

FATAL_CODES = [501, 503, 550, 553]


def _dsn(code: int, subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """A delivery-status report (RFC 3464) for one failed recipient."""
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: helpdesk@desk.example
Subject: {subject}
Message-ID: <dsn-{code}@mx.example.net>
Date: Mon, 02 Mar 2026 09:30:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.
I'm sorry to have to inform you that your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; nobody@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; {code} 5.1.1 <nobody@example.org>: Recipient address rejected

--BOUNDARY
Content-Type: message/rfc822

From: helpdesk@desk.example
To: nobody@example.org
Subject: [CALL#10] Call 10 has been updated
Message-ID: <ours@desk.example>

Call 10 has been updated with your email.
--BOUNDARY--
""".replace("\n", "\r\n").encode()


def _postfix(code: int) -> bytes:
    return f"""\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: helpdesk@desk.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <postfix-{code}@mx.example.net>

This is the mail system at host mx.example.net.

<nobody@example.org>: host mx.example.org[192.0.2.1] said: {code} 5.1.1
    <nobody@example.org>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)
""".encode()


def _exim(code: int) -> bytes:
    return f"""\
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: helpdesk@desk.example
Subject: Mail delivery failed: returning message to sender
Message-ID: <exim-{code}@mx.example.net>
X-Failed-Recipients: nobody@example.org

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  nobody@example.org
    host mx.example.org [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<nobody@example.org>:
    {code} 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Subject: [CALL#10] Call 10 has been updated
""".encode()


def _qmail(code: int) -> bytes:
    return f"""\
From: MAILER-DAEMON@mx.example.net
To: helpdesk@desk.example
Subject: failure notice
Message-ID: <qmail-{code}@mx.example.net>

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<nobody@example.org>:
192.0.2.1 does not like recipient.
Remote host said: {code} sorry, no mailbox here by that name. (#5.1.1)
Giving up on 192.0.2.1.
""".encode()


def _exchange(code: int) -> bytes:
    return f"""\
From: postmaster@mx.example.net
To: helpdesk@desk.example
Subject: Undeliverable: [CALL#10] Call 10 has been updated
Message-ID: <exchange-{code}@mx.example.net>

Delivery has failed to these recipients or groups:

nobody@example.org
The e-mail address you entered couldn't be found.

Diagnostic information for administrators:

Generating server: mx.example.net

nobody@example.org
Remote Server returned '{code} 5.1.1 RESOLVER.ADR.RecipNotFound; not found'
""".encode()


FORMS = {"dsn": _dsn, "postfix": _postfix, "exim": _exim, "qmail": _qmail, "exchange": _exchange}


def _nothing_happened(desk: Desk) -> None:
    assert desk.outbox() == []
    assert desk.call(10)["history"] == [] and not desk.has_call(11)


@pytest.mark.parametrize("code", FATAL_CODES)
def test_delivery_status_bounce_with_fatal_code_is_deleted(make_desk: MakeDesk, code: int) -> None:
    desk = make_desk(CALLS, flags={"log_new_call_on_invalid_number": True})
    result = desk.deliver_raw(_dsn(code))
    assert (result.outcome, result.rule, result.number) == ("bounce_deleted", "delete_fatal_bounce", None)
    _nothing_happened(desk)


@pytest.mark.parametrize("form", ["postfix", "exim", "qmail", "exchange"])
@pytest.mark.parametrize("code", FATAL_CODES)
def test_plain_text_bounce_with_fatal_code_is_deleted(make_desk: MakeDesk, form: str, code: int) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver_raw(FORMS[form](code))
    assert (result.outcome, result.rule) == ("bounce_deleted", "delete_fatal_bounce")
    _nothing_happened(desk)


def test_fatal_bounce_is_deleted_on_postgresql_too(make_desk: MakeDesk, db_url: str) -> None:
    desk = make_desk(CALLS, database=db_url)
    assert desk.deliver_raw(_dsn(550)).outcome == "bounce_deleted"
    _nothing_happened(desk)
    assert [e["outcome"] for e in desk.ledger()] == ["bounce_deleted"]


def test_mailbox_full_bounce_is_not_deleted_but_logs_a_call_without_any_reply(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver_raw(_dsn(552))
    assert (result.outcome, result.rule) == ("logged", "log_new_call")
    call = desk.call(result.number or 0)
    assert call["user"] == "mailer-daemon@mx.example.net"
    assert call["summary"] == "Undelivered Mail Returned to Sender"
    assert desk.outbox() == []


def test_mailbox_full_bounce_naming_a_call_from_an_unknown_postmaster_is_ignored(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver_raw(_exchange(552))
    assert (result.outcome, result.rule) == ("ignored", "update_call_by_unknown_sender_ignored")
    _nothing_happened(desk)


AUTOMATIC = [
    {"Auto-Submitted": "auto-replied"},
    {"Auto-Submitted": "auto-generated"},
    {"Precedence": "bulk"},
    {"Precedence": "junk"},
    {"Precedence": "auto_reply"},
    {"X-Autoreply": "yes"},
    {"X-Loop": "helpdesk@desk.example"},
]


@pytest.mark.parametrize("headers", AUTOMATIC, ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()))
def test_auto_submitted_mail_logs_a_call_but_gets_no_reply(
    make_desk: MakeDesk, headers: dict[str, str]
) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("Weekly report", headers=headers)
    assert (result.outcome, result.replies) == ("logged", ())
    assert desk.has_call(result.number or 0)
    assert desk.outbox() == []


HUMAN = [{"Auto-Submitted": "no"}, {"Precedence": "first-class"}, {"X-Loop": "list@lists.example"}]


@pytest.mark.parametrize("headers", HUMAN, ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()))
def test_mail_with_harmless_automation_headers_is_answered(
    make_desk: MakeDesk, headers: dict[str, str]
) -> None:
    desk = make_desk(CALLS)
    result = desk.deliver("Printer broken", headers=headers)
    assert [r.to for r in result.replies] == ["ada@example.com"]


def test_out_of_office_answer_with_call_tag_updates_the_call_without_reply(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = make_desk(CALLS, database=db_url)
    result = desk.deliver(
        "Automatic reply: [CALL#10] Call 10 has been updated",
        headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"},
        body="I am out of the office until Monday.\n",
    )
    assert (result.outcome, result.number, result.replies) == ("updated", 10, ())
    call = desk.call(10)
    assert "out of the office" in desk.texts(call, "email_update")[0]
    assert call["updated_by_email"] is True
    assert desk.outbox() == []


@pytest.mark.parametrize(
    ("subject", "sender", "items"),
    [
        ("[CLOSE#10]", "ada@example.com", CALLS),
        ("[CLOSE#10]", "bob@example.com", CALLS),
        ("[MyCalls]", "grace@example.com", CALLS),
        (
            "[APPROVE#90]",
            "fran@example.com",
            "tasks:\n  - {number: 90, kind: approval, status: open, approver: fran@example.com}\n",
        ),
    ],
)
def test_commands_from_auto_submitted_mail_get_no_confirmation(
    make_desk: MakeDesk, subject: str, sender: str, items: str
) -> None:
    desk = make_desk(items)
    result = desk.deliver(subject, sender=sender, headers={"Auto-Submitted": "auto-replied"})
    assert result.replies == ()
    assert desk.outbox() == []


def test_assignee_is_still_notified_of_an_update_from_auto_submitted_mail(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS, email_at_update=True)
    result = desk.deliver("Automatic reply: [CALL#10]", headers={"Auto-Submitted": "auto-replied"})
    assert (result.replies, [n.to for n in result.notifications]) == ((), ["grace@example.com"])

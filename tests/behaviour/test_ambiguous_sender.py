"""A sender that cannot be confused: mail whose From/Sender do not name one clear mailbox counts as
from an unknown sender for commands and for looking people up, gets no answer, and ``explain``
says why."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from engine.rules.explain import explain_message

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

ITEMS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
"""

# Each form names ada, who may close her call 10, beside or instead of the attacker's mailbox.
FORMS = [
    ("two From headers", "From: ada@example.com\nFrom: attacker@evil.example\n"),
    ("two mailboxes", "From: ada@example.com, attacker@evil.example\n"),
    ("group syntax", "From: ada@example.com: <attacker@evil.example>\n"),
    ("address as display name", 'From: "ada@example.com" <attacker@evil.example>\n'),
    ("bare address as display name", "From: ada@example.com <attacker@evil.example>\n"),
    ("Sender differs from From", "From: ada@example.com\nSender: attacker@evil.example\n"),
]
IDS = [form for form, _ in FORMS]


def _mail(from_lines: str, subject: str) -> bytes:
    return (
        f"{from_lines}To: helpdesk@desk.example\nSubject: {subject}\n"
        "Message-ID: <ambiguous-1@evil.example>\n\nPlease close it.\n"
    ).encode()


def _not_answered(desk: Desk) -> list[str]:
    detail = desk.ledger()[-1]["detail"]
    found = json.loads(detail) if isinstance(detail, str) else detail
    return list(found.get("not_answered", []))


@pytest.mark.parametrize(("form", "from_lines"), FORMS, ids=IDS)
def test_an_ambiguous_sender_cannot_command_as_the_person_it_names(
    make_desk: MakeDesk, form: str, from_lines: str
) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver_raw(_mail(from_lines, "[CLOSE#10]"))
    assert (result.outcome, result.rule) == ("refused", "close_by_unknown_sender_refused"), form
    assert desk.call(10)["status"] == "open"
    assert desk.outbox() == []  # no answer to anyone: we do not know who sent it
    [reason] = _not_answered(desk)
    assert reason.startswith("the sender is ambiguous: ")


@pytest.mark.parametrize(("form", "from_lines"), FORMS, ids=IDS)
def test_explain_says_why_the_sender_is_ambiguous(make_desk: MakeDesk, form: str, from_lines: str) -> None:
    desk = make_desk(ITEMS)
    explained = explain_message(desk.runtime, desk.account, _mail(from_lines, "[CLOSE#10]"))
    assert explained.facts["sender.ambiguous"] is True
    assert explained.facts["sender.known"] is False
    [note] = [n for n in explained.notes if "ambiguous" in n]
    assert note.startswith("the sender is ambiguous and treated as unknown: ")
    assert f"note: {note}" in explained.to_text()
    assert explained.to_json()["notes"] == explained.notes


@pytest.mark.parametrize(("form", "from_lines"), FORMS, ids=IDS)
def test_new_mail_from_an_ambiguous_sender_is_logged_without_looking_anyone_up(
    make_desk: MakeDesk, db_url: str, form: str, from_lines: str
) -> None:
    desk = make_desk(ITEMS, database=db_url)
    result = desk.deliver_raw(_mail(from_lines, "Printer on fire"))
    assert (result.outcome, result.rule) == ("logged", "log_new_call")
    call = desk.call(result.number or 0)
    assert call["user"] is None  # not ada, and no person made for whoever it was
    assert desk.people("attacker@evil.example") == []
    assert len(desk.people("ada@example.com")) == 1
    assert "ambiguous sender" in desk.texts(call, "logged")[0]
    assert desk.outbox() == []


def test_a_sender_header_naming_the_from_mailbox_is_not_ambiguous(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver_raw(_mail("From: Ada <ada@example.com>\nSender: ADA@example.com\n", "[CLOSE#10]"))
    assert (result.outcome, result.rule) == ("closed", "close_call")


def test_an_address_as_its_own_display_name_is_not_ambiguous(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver_raw(_mail('From: "ada@example.com" <ada@example.com>\n', "[CLOSE#10]"))
    assert (result.outcome, result.rule) == ("closed", "close_call")


BOUNDARY_LINES = (
    "Authentication-Results: mx.desk.example; dkim=pass header.d=example.com;"
    " dmarc=pass header.from=example.com\n"
    "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.desk.example (Postfix)"
    " with ESMTPS id 4Dm0 for <helpdesk@desk.example>; Mon, 2 Mar 2026 09:30:00 +0000\n"
)


def test_an_ambiguous_sender_is_never_authenticated_even_with_a_trusted_dmarc_pass(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(ITEMS, authentication={"trusted_authserv_ids": ["mx.desk.example"]})
    clear = BOUNDARY_LINES.encode() + _mail("From: ada@example.com\n", "[CLOSE#10]")
    ambiguous = BOUNDARY_LINES.encode() + _mail(
        "From: ada@example.com\nSender: eve@example.com\n", "[CLOSE#10]"
    )
    trusted = explain_message(desk.runtime, desk.account, clear)
    assert (trusted.facts["sender.authenticated"], trusted.facts["sender.authentication"]) == (True, "dmarc")
    refused = explain_message(desk.runtime, desk.account, ambiguous)
    assert (refused.facts["sender.authenticated"], refused.facts["sender.authentication"]) == (False, "none")
    assert refused.authentication is not None
    assert (
        refused.authentication.evidence
        == "the sender is ambiguous: Sender (eve@example.com) differs from From (ada@example.com)"
    )


LOOKALIKE_FORMS = [
    ("fullwidth at sign", 'From: "ada\uff20example.com" <attacker@evil.example>\n'),
    ("small at sign", "From: ada\ufe6bexample.com <attacker@evil.example>\n"),
    ("fullwidth letters", 'From: "\uff41\uff44\uff41@example.com" <attacker@evil.example>\n'),
    ("invisible joiner", 'From: "ada@\u2060example.com" <attacker@evil.example>\n'),
    ("in a comment", "From: attacker@evil.example (ada\uff20example.com)\n"),
    ("in Sender", "From: ada@example.com\nSender: attacker\uff20evil.example\n"),
]


@pytest.mark.parametrize(("form", "from_lines"), LOOKALIKE_FORMS, ids=[f for f, _ in LOOKALIKE_FORMS])
def test_a_display_name_that_looks_like_another_address_to_a_person_is_ambiguous(
    make_desk: MakeDesk, form: str, from_lines: str
) -> None:
    desk = make_desk(ITEMS)
    explained = explain_message(desk.runtime, desk.account, _mail(from_lines, "[CLOSE#10]"))
    assert explained.facts["sender.ambiguous"] is True, form


def test_an_address_as_its_own_display_name_in_lookalike_characters_is_not_ambiguous(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk(ITEMS)
    result = desk.deliver_raw(_mail('From: "ada\uff20example.com" <ada@example.com>\n', "[CLOSE#10]"))
    assert (result.outcome, result.rule) == ("closed", "close_call")


BESIDE_FORMS = [
    ("a result after a semicolon", "From: ada@example.com;dmarc=pass\n"),
    ("an unreadable address after a comma", 'From: ada@example.com, "x"@evil.example\n'),
    ("an empty address after a comma", "From: ada@example.com, <>\n"),
    ("a local part after a semicolon", "From: <ada@example.com>; attacker\n"),
]


@pytest.mark.parametrize(("form", "from_lines"), BESIDE_FORMS, ids=[f for f, _ in BESIDE_FORMS])
def test_a_from_with_anything_beside_its_one_mailbox_is_ambiguous(
    make_desk: MakeDesk, form: str, from_lines: str
) -> None:
    """What else reads From (our boundary's DMARC check, a mail program) may take the rest for the
    sender, or copy it into its verdict: ``header.from=example.com;dmarc=pass``."""
    desk = make_desk(ITEMS)
    explained = explain_message(desk.runtime, desk.account, _mail(from_lines, "[CLOSE#10]"))
    assert explained.facts["sender.ambiguous"] is True, form
    assert explained.facts["sender.known"] is False


def test_an_unquoted_comma_in_a_display_name_is_not_ambiguous(make_desk: MakeDesk) -> None:
    """Some scripts write ``Lovelace, Ada <ada@example.com>``: no reader takes "Lovelace" for a mailbox."""
    desk = make_desk(ITEMS)
    result = desk.deliver_raw(_mail("From: Lovelace, Ada <ada@example.com>\n", "[CLOSE#10]"))
    assert (result.outcome, result.rule) == ("closed", "close_call")


@pytest.mark.parametrize(
    "from_line",
    [
        'From: "\u202emoc.elpmaxe@ada\u202c" <attacker@evil.example>\n',  # shown as ada@example.com
        "From: =?utf-8?b?4oCubW9jLmVscG1heGVAYWRh4oCs?= <attacker@evil.example>\n",  # the same, encoded
        'From: "Ada \u2067moc.elpmaxe@ada\u2069" <attacker@evil.example>\n',  # an isolate
    ],
)
def test_a_display_name_that_reorders_itself_for_the_reader_is_ambiguous(
    make_desk: MakeDesk, from_line: str
) -> None:
    desk = make_desk(ITEMS)
    explained = explain_message(desk.runtime, desk.account, _mail(from_line, "[CLOSE#10]"))
    assert explained.facts["sender.ambiguous"] is True


@pytest.mark.parametrize(
    "from_line",
    [
        "From: \uff41\uff44\uff41@example.com\n",  # full-width letters
        "From: ad\u00ada@example.com\n",  # an invisible soft hyphen
        "From: ada@example\u2024com\n",  # a one-dot leader for the dot
    ],
)
def test_a_from_address_that_reads_as_another_is_ambiguous(make_desk: MakeDesk, from_line: str) -> None:
    desk = make_desk(ITEMS)
    explained = explain_message(desk.runtime, desk.account, _mail(from_line, "Printer on fire"))
    assert explained.facts["sender.ambiguous"] is True

"""A sender that cannot be confused: every From/Sender form that makes the sender ambiguous, and
the mailbox an address reaches (for the reply limit)."""

from __future__ import annotations

import pytest

from engine.errors import MailError
from engine.mail.message import parse_message
from engine.mail.sender import has_group_syntax, mailbox_key

# (what it is, the header lines, words the reason must contain)
AMBIGUOUS = [
    ("two From headers", b"From: carl@example.com\nFrom: attacker@evil.example\n", "2 From headers"),
    ("two mailboxes in From", b"From: carl@example.com, attacker@evil.example\n", "2 mailboxes"),
    ("group syntax", b"From: carl@example.com: <attacker@evil.example>\n", "group syntax"),
    (
        "group syntax, terminated",
        b"From: Friends: carl@example.com, attacker@evil.example;\n",
        "group syntax",
    ),
    ("quoted address as name", b'From: "carl@example.com" <attacker@evil.example>\n', "display name"),
    (
        "encoded address as name",
        b"From: =?utf-8?q?carl=40example=2Ecom?= <attacker@evil.example>\n",
        "display",
    ),
    ("bare address as name", b"From: carl@example.com <attacker@evil.example>\n", "attacker@evil.example"),
    ("address in a comment", b"From: attacker@evil.example (carl@example.com)\n", "another address"),
    ("Sender differs", b"From: carl@example.com\nSender: attacker@evil.example\n", "Sender"),
    (
        "two Sender headers",
        b"From: carl@example.com\nSender: carl@example.com\nSender: x@evil.example\n",
        "2 Sender",
    ),
]


@pytest.mark.parametrize(("form", "headers", "reason"), AMBIGUOUS, ids=[a[0] for a in AMBIGUOUS])
def test_each_confusable_from_form_makes_the_sender_ambiguous(form: str, headers: bytes, reason: str) -> None:
    message = parse_message(headers + b"Subject: hi\n\nbody\n")
    assert message.sender_ambiguity is not None, form
    assert reason in message.sender_ambiguity


@pytest.mark.parametrize(
    "headers",
    [
        b"From: Carl Example <carl@example.com>\n",
        b'From: "carl@example.com" <Carl@Example.com>\n',  # Outlook writes the address as the name
        b'From: "Example, Carl (IT: Ops)" <carl@example.com>\n',  # a colon inside quotes or a comment
        b"From: carl@example.com\nSender: CARL@example.com\n",  # Sender naming the same mailbox
        b"From: Carl <carl@example.com>\nSender:\n",
    ],
)
def test_one_clear_mailbox_is_not_ambiguous(headers: bytes) -> None:
    message = parse_message(headers + b"Subject: hi\n\nbody\n")
    assert message.sender_ambiguity is None
    assert message.from_address == "carl@example.com"


def test_group_syntax_is_found_outside_quotes_comments_and_angle_brackets_only() -> None:
    assert has_group_syntax("undisclosed:;")
    assert not has_group_syntax('"Re: you" <a@example.com>')
    assert not has_group_syntax("a@example.com (note: x)")
    assert not has_group_syntax("<@relay.example:a@example.com>")


def test_mailbox_key_ignores_letter_case_and_plus_tags() -> None:
    assert mailbox_key(" Ann+Tickets@Example.COM ") == "ann@example.com"
    assert mailbox_key("ann+a+b@example.com") == "ann@example.com"
    assert mailbox_key("ann@example.com") == "ann@example.com"
    assert mailbox_key("+only@example.com") == "+only@example.com"  # no base name left: kept whole


# an address that is not the mailbox the mail names, only text inside it
HIDDEN_ADDRESSES = [
    ("quoted local part", b'From: "carl@example.com"@evil.example\n'),
    ("quoted local part, spaced", b'From: "carl@example.com" @evil.example\n'),
    ("two at signs", b"From: carl@example.com@evil.example\n"),
    ("encoded word making the at sign", b"From: <=?utf-8?q?carl=40example.com?=>\n"),
    ("encoded word making the whole address", b"From: =?utf-8?q?carl=40example.com?=\n"),
]


@pytest.mark.parametrize("headers", [h for _, h in HIDDEN_ADDRESSES], ids=[f for f, _ in HIDDEN_ADDRESSES])
def test_an_address_hidden_in_a_quoted_local_part_or_an_encoded_word_is_never_the_sender(
    headers: bytes,
) -> None:
    with pytest.raises(MailError, match="From header unparseable"):  # quarantined, never read as Carl
        parse_message(headers + b"Subject: [CLOSE#12]\n\nbody\n")


@pytest.mark.parametrize(
    ("headers", "address"),
    [
        (b"From: =?utf-8?q?j=C3=B6rg?=@example.com\n", "j\u00f6rg@example.com"),  # Python writes these
        (b"From: Carl <carl@example.com\n", "carl@example.com"),  # an unclosed angle bracket
        (b"From: Carl Example carl@example.com\n", "carl@example.com"),
        (b'From: "Example, Carl" carl@example.com\n', "carl@example.com"),
    ],
)
def test_a_mailbox_written_loosely_but_on_its_own_is_still_read(headers: bytes, address: str) -> None:
    assert parse_message(headers + b"Subject: hi\n\nbody\n").from_address == address

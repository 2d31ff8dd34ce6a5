"""Hostile headers: every one is read in time linear in its size, or quarantined naming the header.

Each input once took from seconds to minutes (the standard header parser, our own address regex,
the stray-line repair and the parameter parser were quadratic); none may stall the service. These
tests assert outcomes only: a test that hangs is the failure (bench/hostile_headers.py prints times).
"""

from __future__ import annotations

import pytest

from engine.errors import MailError
from engine.mail.header_bounds import (
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MAX_KEY_BYTES,
    MAX_MIME_PARTS,
    address_elements,
    ledger_key,
)
from engine.mail.message import parse_message

BODY = b"\n\nhello\n"


def mail(*headers: bytes) -> bytes:
    return b"\n".join(headers) + BODY


def quarantine_reason(raw: bytes) -> str:
    with pytest.raises(MailError) as caught:
        parse_message(raw)
    return caught.value.reason


# --- the inputs of the issue ---------------------------------------------------------------------


def test_a_100_kb_from_of_double_quotes_is_quarantined_naming_from() -> None:
    raw = mail(b"From: " + b'"' * 100_000, b"Subject: quotes")
    assert quarantine_reason(raw) == "From header of 100,007 bytes exceeds the limit of 65,536"


def test_a_150_kb_from_of_letters_is_quarantined_naming_from() -> None:
    raw = mail(b"From: " + b"a" * 150_000, b"Subject: letters")
    assert quarantine_reason(raw) == "From header of 150,007 bytes exceeds the limit of 65,536"


def test_a_1_mb_subject_is_quarantined_naming_subject() -> None:
    folded = b"\n ".join([b"s" * 998] * 1_000)
    raw = mail(b"From: a@example.org", b"Subject: " + folded)
    assert quarantine_reason(raw) == "Subject header of 1,000,008 bytes exceeds the limit of 65,536"


def test_10000_received_headers_are_quarantined_naming_received() -> None:
    hops = [
        b"Received: from relay%d.example.org by mx.example.org; Mon, 2 Mar 2026 08:00 +0000" % i
        for i in range(10_000)
    ]
    raw = mail(b"From: a@example.org", *hops)
    assert quarantine_reason(raw) == "10,000 Received header fields exceed the limit of 500 of one name"


def test_100000_addresses_in_to_are_quarantined_naming_to() -> None:
    to = b",\n ".join(b"user%d@example.org" % i for i in range(100_000))
    reason = quarantine_reason(mail(b"From: a@example.org", b"To: " + to))
    assert reason.startswith("To header of ") and reason.endswith("bytes exceeds the limit of 131,072")


# --- just under the bounds: read, linearly -------------------------------------------------------


def test_a_from_of_hostile_quoted_addresses_under_the_bounds_is_read() -> None:
    raw = mail(b"From: " + b",".join([b'"' * 480] * 120) + b" <a@example.org>")
    assert parse_message(raw).from_address == "a@example.org"


def test_a_to_of_hostile_addresses_under_the_bounds_is_read() -> None:
    addresses = [b'"' * 250 + b"." * 240 + b"u%d@x.org" % i for i in range(250)]
    message = parse_message(mail(b"From: a@example.org", b"To: " + b",".join(addresses)))
    assert message.from_address == "a@example.org"


def test_a_to_of_as_many_addresses_as_allowed_keeps_them_all() -> None:
    to = b", ".join(b"user%d@example.org" % i for i in range(MAX_ADDRESSES))
    message = parse_message(mail(b"From: a@example.org", b"To: " + to))
    assert len(message.to) == MAX_ADDRESSES and message.to[-1] == f"user{MAX_ADDRESSES - 1}@example.org"


def test_a_run_of_letters_before_an_address_in_from_is_skipped() -> None:
    raw = mail(b"From: " + b"a" * 400 + b" b@example.org")
    assert parse_message(raw).from_address == "b@example.org"


def test_thousands_of_stray_lines_in_the_header_block_are_repaired_linearly() -> None:
    raw = mail(b"From: a@example.org", b"Subject: stray", b"xx\n" * 15_000 + b"X-After: yes")
    message = parse_message(raw)
    assert message.subject.startswith("stray xx") and any("stray line" in p for p in message.problems)


# --- every other bound names its header ----------------------------------------------------------


def test_more_addresses_than_the_limit_are_quarantined_naming_the_header() -> None:
    cc = b",".join(b"u%d@x.org" % i for i in range(MAX_ADDRESSES + 1))
    reason = quarantine_reason(mail(b"From: a@example.org", b"Cc: " + cc))
    assert reason == f"Cc header names {MAX_ADDRESSES + 1:,} addresses, over the limit of {MAX_ADDRESSES:,}"


def test_an_address_longer_than_the_limit_is_quarantined_naming_the_header() -> None:
    reason = quarantine_reason(mail(b"From: a@example.org", b"Reply-To: " + b"r" * 600 + b"@example.org"))
    assert (
        reason == f"Reply-To header has an address of 612 characters, over the limit of {MAX_ADDRESS_CHARS}"
    )


def test_too_many_header_fields_are_quarantined_naming_the_commonest() -> None:
    fields = [b"X-Tag-%d: t" % (i % 400) for i in range(2_001)]
    reason = quarantine_reason(mail(b"From: a@example.org", *fields))
    assert reason.startswith("2,002 header fields exceed the limit of 2,000 (most of them X-Tag-")


def test_a_content_type_with_too_many_parameters_is_quarantined_naming_it() -> None:
    raw = mail(b"From: a@example.org", b'Content-Type: text/plain; p="' + b";" * 60_000 + b'"')
    assert quarantine_reason(raw) == "Content-Type header has 60,001 parameters, over the limit of 100"


def test_a_mime_part_header_over_the_limit_is_quarantined_naming_the_part() -> None:
    raw = (
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Type: text/plain\nContent-Description: " + b"d" * 70_000 + b"\n\nhello\n--B--\n"
    )
    reason = quarantine_reason(raw)
    assert reason == "Content-Description header of MIME part 1 of 70,021 bytes exceeds the limit of 65,536"


# --- the scanner and the key ---------------------------------------------------------------------


def test_addresses_split_at_commas_outside_quotes_comments_and_brackets_and_groups_lose_their_name() -> None:
    value = '"Last, First" <a@x.org>, b@x.org (Bee, B), Team: c@x.org, <d,@x.org>; e@x.org'
    assert address_elements("To", value) == [
        '"Last, First" <a@x.org>',
        "b@x.org (Bee, B)",
        "c@x.org",
        "<d,@x.org>",
        "e@x.org",
    ]


def test_a_group_of_nobody_names_no_address() -> None:
    assert address_elements("To", "undisclosed-recipients:;") == []


def test_a_long_message_id_is_keyed_by_its_digest_and_the_same_id_gives_the_same_key() -> None:
    long_id = "x" * 300 + "@example.org"
    key = ledger_key(long_id, "0" * 64)
    assert key.startswith("message-id-sha256:") and len(key.encode()) <= MAX_KEY_BYTES
    assert key == ledger_key(long_id, "f" * 64)  # the id, not the bytes, names the message
    assert ledger_key("short@example.org", "0" * 64) == "short@example.org"
    assert ledger_key(None, "ab" * 32) == "sha256:" + "ab" * 32


def _parts(count: int) -> bytes:
    boundary = b"b0undary"
    body = b"".join(b"--" + boundary + b"\nContent-Type: text/plain\n\nx\n" for _ in range(count))
    return (
        b'From: a@example.org\nSubject: parts\nContent-Type: multipart/mixed; boundary="b0undary"\n\n'
        + body
        + b"--"
        + boundary
        + b"--\n"
    )


def test_a_mail_of_100000_mime_parts_is_quarantined_naming_the_limit() -> None:
    assert quarantine_reason(_parts(100_000)) == "more than 1,000 MIME parts exceed the limit of 1,000"


def test_a_mail_of_as_many_mime_parts_as_allowed_is_read() -> None:
    assert parse_message(_parts(MAX_MIME_PARTS - 1)).body.count("x") == MAX_MIME_PARTS - 1

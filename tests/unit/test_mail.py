"""parse_message turns raw mail into an IncomingMessage or a MailError, and never anything else."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.errors import MailError
from engine.mail.message import IncomingMessage, parse_message, reply_portion, sanitize_filename

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mail"
OURS = ("helpdesk@example.com",)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse_fixture(name: str) -> IncomingMessage:
    return parse_message(fixture_bytes(name), our_addresses=OURS)


def quarantine_reason(raw: bytes, max_header_bytes: int = 1_000_000) -> str:
    with pytest.raises(MailError) as caught:
        parse_message(raw, max_header_bytes=max_header_bytes)
    return caught.value.reason


# --- headers ---------------------------------------------------------------------------------


def test_plain_text_message_has_its_headers_decoded() -> None:
    message = parse_fixture("plain_text.eml")
    assert message.message_id == "plain.1@example.org"
    assert message.key == "plain.1@example.org"
    assert message.from_address == "alice@example.org"
    assert message.from_name == "Alice Example"
    assert message.reply_to == "alice.replies@example.org"
    assert message.to == ("helpdesk@example.com", "bob@example.com")
    assert message.cc == ("carol@example.net",)
    assert message.date == datetime(2025, 3, 4, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    assert message.problems == ()


def test_encoded_folded_subject_is_decoded_and_unfolded() -> None:
    assert parse_fixture("plain_text.eml").subject == "Drucker im 3. Stock druckt nicht – bitte prüfen"


def test_in_reply_to_and_references_are_ids_without_brackets() -> None:
    message = parse_fixture("plain_text.eml")
    assert message.in_reply_to == ("earlier.7@example.com",)
    assert message.references == ("first.1@example.com", "earlier.7@example.com")


def test_raw_sha256_is_the_digest_of_the_exact_input() -> None:
    raw = fixture_bytes("plain_text.eml")
    assert parse_message(raw).raw_sha256 == hashlib.sha256(raw).hexdigest()


def test_message_without_message_id_is_keyed_by_its_sha256() -> None:
    message = parse_fixture("no_message_id.eml")
    assert message.message_id is None
    assert message.key == f"sha256:{message.raw_sha256}"


def test_message_id_with_spaces_inside_the_brackets_is_stripped() -> None:
    message = parse_fixture("message_id_spaces.eml")
    assert message.message_id == "spaced.id.1@example.org"
    assert message.key == "spaced.id.1@example.org"
    assert message.in_reply_to == ("a.1@example.com", "b.2@example.com")


def test_blank_message_id_counts_as_absent() -> None:
    message = parse_message(b"From: a@example.org\nMessage-ID:   \n\nbody\n")
    assert message.message_id is None
    assert message.key.startswith("sha256:")


def test_unparseable_date_is_none_and_recorded_as_a_problem() -> None:
    message = parse_fixture("no_message_id.eml")
    assert message.date is None
    assert any("Date" in problem for problem in message.problems)


def test_date_without_zone_is_taken_as_utc() -> None:
    message = parse_message(b"From: a@example.org\nDate: Tue, 04 Mar 2025 09:15:00 -0000\n\nx\n")
    assert message.date == datetime(2025, 3, 4, 9, 15, tzinfo=UTC)


def test_missing_subject_is_an_empty_string() -> None:
    assert parse_message(b"From: a@example.org\n\nbody\n").subject == ""


def test_raw_8bit_utf8_headers_are_decoded() -> None:
    message = parse_fixture("header_8bit.eml")
    assert message.from_name == "Jürgen Müller"
    assert message.subject == "Größe der Festplatte"


def test_obsolete_header_syntax_and_a_stray_header_line_are_repaired() -> None:
    message = parse_fixture("obsolete_header_syntax.eml")
    assert message.from_address == "sam@example.org"
    assert message.message_id == "old.style@example.org"
    assert message.subject.startswith("Old style headers")
    assert message.body == "Body of an old mail."
    assert any("space before the colon" in p for p in message.problems)
    assert any("stray line" in p for p in message.problems)


def test_encoded_words_split_inside_a_character_are_joined_before_decoding() -> None:
    # "é" is the two bytes C3 A9; the sender split them across two encoded words.
    raw = b"From: a@example.org\nSubject: =?utf-8?q?caf=C3?= =?utf-8?q?=A9_au_lait?=\n\nx\n"
    assert parse_message(raw).subject == "café au lait"


def test_unknown_charset_in_an_encoded_word_falls_back_and_is_recorded() -> None:
    raw = b"From: a@example.org\nSubject: =?x-unknown?q?Gr=C3=BC=C3=9Fe?=\n\nx\n"
    message = parse_message(raw)
    assert message.subject == "Grüße"
    assert any("X-UNKNOWN" in problem for problem in message.problems)


def test_leading_blank_lines_before_the_headers_are_ignored() -> None:
    message = parse_message(b"\r\n\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
    assert message.subject == "hi"
    assert message.body == "body"


def test_mbox_envelope_line_before_the_headers_is_accepted() -> None:
    raw = b"From a@example.org Tue Mar  4 10:00:00 2025\nFrom: a@example.org\nSubject: hi\n\nbody\n"
    assert parse_message(raw).from_address == "a@example.org"


def test_encoded_words_inside_an_address_are_decoded() -> None:
    raw = b"From: =?utf-8?q?j=C3=BCrgen?=@=?utf-8?q?ex=C3=A4mple?=.com\n\nbody\n"  # as Python writes it
    assert parse_message(raw).from_address == "j\u00fcrgen@ex\u00e4mple.com"


def test_malformed_from_still_yields_the_address_inside_it() -> None:
    message = parse_message(b"From: Bob Smith bob@example.org\n\nbody\n")
    assert message.from_address == "bob@example.org"
    assert any("From header is malformed" in problem for problem in message.problems)


# --- quarantine ------------------------------------------------------------------------------


def test_empty_input_is_quarantined() -> None:
    assert quarantine_reason(b"") == "empty message"
    assert quarantine_reason(b" \r\n \n") == "empty message"


def test_input_without_headers_is_quarantined() -> None:
    assert quarantine_reason(fixture_bytes("no_headers.eml")) == "not an email: no header lines found"


def test_binary_input_is_quarantined() -> None:
    assert quarantine_reason(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)).startswith("not an email")


def test_missing_from_is_quarantined() -> None:
    assert quarantine_reason(fixture_bytes("missing_from.eml")) == "no sender: From header missing"


def test_unparseable_from_is_quarantined_naming_the_value() -> None:
    reason = quarantine_reason(fixture_bytes("unparseable_from.eml"))
    assert reason.startswith("no sender: From header unparseable")
    assert "not an address at all" in reason


def test_from_without_a_domain_is_quarantined() -> None:
    assert quarantine_reason(b"From: root (Cron Daemon)\n\nx\n").startswith("no sender")


def test_huge_header_block_is_quarantined_with_its_size() -> None:
    raw = b"From: a@example.org\n" + b"X-Filler: " + b"x" * 2_000 + b"\n\nbody\n"
    size = raw.index(b"\n\n") + 1
    reason = quarantine_reason(raw, max_header_bytes=1_000)
    assert reason == f"header block of {size} bytes exceeds the limit of 1000"


def test_default_header_limit_refuses_headers_over_a_megabyte() -> None:
    filler = b"".join(b"X-Filler-%d: %s\n" % (i, b"y" * 890) for i in range(1_200))
    raw = b"From: a@example.org\n" + filler + b"\nbody\n"
    assert "exceeds the limit of 1000000" in quarantine_reason(raw)


def test_header_block_under_the_limit_is_accepted() -> None:
    raw = b"From: a@example.org\n" + b"X-Filler: " + b"x" * 500 + b"\n\nbody\n"
    assert parse_message(raw, max_header_bytes=1_000).body == "body"


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.org\nContent-Type: multipart/mixed\n\nno boundary at all\n",
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=X\n\n--X\n--X\n--X--\n",
        b'From: a@example.org\nContent-Type: text/plain; charset="\n\nx\n',
        b"From: a@example.org\nContent-Transfer-Encoding: base64\n\n====\n",
        b"From: a@example.org\nContent-Type: text/plain; charset=utf-16\n\n\xff\xfe\x00\n",
        b"From: a@example.org\nContent-Type: message/rfc822\n\nnot really a message\n",
        b"From: a@example.org\nContent-Type: message/delivery-status\n\n\n\n",
        b"From: =?utf-8?b?!!!?= <a@example.org>\nSubject: =?bogus?x?y?=\nDate: 99 Foo 99999\n\nx\n",
        b"From: a@example.org\nContent-Disposition: attachment; filename*=bogus''%ZZ\n\nx\n",
        b"From: a@example.org\n" + b"Content-Type: multipart/mixed; boundary=B\n\n--B\n" * 200,
    ],
)
def test_broken_mail_gives_a_message_or_a_mail_error_never_another_exception(raw: bytes) -> None:
    try:
        message = parse_message(raw)
    except MailError as exc:
        assert exc.reason
    else:
        assert message.from_address == "a@example.org"


def test_deeply_nested_mime_is_read_or_quarantined() -> None:
    nested = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B0\n\n"
    for depth in range(1, 120):
        nested += b"--B%d\nContent-Type: multipart/mixed; boundary=B%d\n\n" % (depth - 1, depth)
    nested += b"--B119\nContent-Type: text/plain\n\ndeep\n"
    try:
        message = parse_message(nested)
    except MailError as exc:
        assert "nested" in exc.reason
    else:
        assert message.from_address == "a@example.org"


# --- body ------------------------------------------------------------------------------------


def test_plain_body_has_normalised_line_endings_and_no_trailing_whitespace() -> None:
    body = parse_fixture("plain_text.eml").body
    assert body == "Hello desk,\n\nthe printer on the third floor prints blank pages.\nGrüße, Alice"
    assert not parse_fixture("plain_text.eml").body_was_html


def test_html_only_body_is_converted_to_readable_text() -> None:
    message = parse_fixture("html_only.eml")
    assert message.body_was_html
    assert message.body == (
        "Printer problem\n\n"
        "Fish & chips cost €5 <each> – see the menu.\n\n"
        "- First item\n"
        "- Second bold item\n\n"
        "Line one\nLine two\n\n"
        "Last line"
    )


def test_html_conversion_drops_script_style_and_title() -> None:
    body = parse_fixture("html_only.eml").body
    assert "alert" not in body
    assert "color" not in body
    assert "Ignore this title" not in body


def test_multipart_alternative_prefers_the_plain_text() -> None:
    message = parse_fixture("multipart_alternative.eml")
    assert message.body == "The plain text version."
    assert not message.body_was_html
    assert message.attachments == ()


def test_blank_plain_alternative_falls_back_to_the_html() -> None:
    raw = (
        b"From: a@example.org\nContent-Type: multipart/alternative; boundary=A\n\n"
        b"--A\nContent-Type: text/plain\n\n  \n--A\nContent-Type: text/html\n\n<p>Real text</p>\n--A--\n"
    )
    message = parse_message(raw)
    assert message.body == "Real text"
    assert message.body_was_html


def test_format_flowed_lines_are_joined() -> None:
    body = parse_fixture("format_flowed.eml").body
    assert body.splitlines()[0] == (
        "This paragraph was wrapped by the mail program and must be joined back into one line."
    )


def test_unknown_charset_with_utf8_bytes_is_decoded_as_utf8() -> None:
    message = parse_fixture("unknown_charset.eml")
    assert message.body == "Grüße aus Köln"
    assert message.problems == ("unknown charset X-UNKNOWN, decoded as utf-8",)


def test_unknown_charset_with_latin1_bytes_is_decoded_as_a_latin_charset() -> None:
    message = parse_fixture("unknown_charset_latin1.eml")
    assert message.body == "Grüße aus Köln"
    assert message.problems == ("unknown charset X-UNKNOWN, decoded as cp1252",)


def test_text_that_is_not_valid_in_its_declared_charset_is_still_decoded() -> None:
    raw = b"From: a@example.org\nContent-Type: text/plain; charset=utf-8\n\nCaf\xe9 ouvert\n"
    message = parse_message(raw)
    assert message.body == "Café ouvert"
    assert message.problems == ("text is not valid utf-8, decoded as cp1252",)


def test_broken_base64_body_decodes_what_it_can_and_records_a_problem() -> None:
    message = parse_fixture("broken_base64.eml")
    assert message.body.startswith("Hello desk, the VPN is down since this morning.")
    assert "broken base64 data, decoded what was possible" in message.problems


def test_broken_quoted_printable_keeps_the_bad_sequence_and_records_a_problem() -> None:
    message = parse_fixture("broken_quoted_printable.eml")
    assert message.body == "Café costs 5=ZZ euros and the line is softly broken."
    assert "malformed quoted-printable sequences kept as they were" in message.problems


def test_nul_and_control_characters_never_reach_the_body() -> None:
    raw = b"From: a@example.org\nSubject: a\x00b\n\nline\x00one\x07\n"
    message = parse_message(raw)
    assert message.body == "lineone"
    assert message.subject == "ab"


# --- attachments -----------------------------------------------------------------------------


def test_path_like_attachment_names_are_reduced_to_their_base_name() -> None:
    attachments = parse_fixture("attachments_path_like.eml").attachments
    assert [a.filename for a in attachments] == ["passwd", "y.doc", "attachment-3.bin"]
    assert attachments[0].content_type == "application/pdf"
    assert attachments[0].data == b"%PDF-1.4 fake pdf bytes\n"
    assert attachments[0].size == len(attachments[0].data)


def test_rfc2231_and_rfc2047_attachment_names_are_decoded() -> None:
    names = [a.filename for a in parse_fixture("attachment_encoded_names.eml").attachments]
    assert names == ["Résumé François.pdf", "Übersicht.pdf"]


def test_attached_message_becomes_an_eml_named_after_its_subject() -> None:
    (attachment,) = parse_fixture("attachment_message_rfc822.eml").attachments
    assert attachment.filename == "Server room_door is open.eml"
    assert attachment.content_type == "message/rfc822"
    assert b"Subject: Server room/door is open" in attachment.data
    assert b"The door was open all night." in attachment.data


def test_inline_image_with_a_name_is_an_attachment_and_one_without_is_not() -> None:
    message = parse_fixture("inline_images.eml")
    assert [a.filename for a in message.attachments] == ["screenshot.png"]
    assert message.body == "See the screenshot"


def test_25_megabyte_attachment_is_decoded_intact() -> None:
    payload = bytes(range(256)) * (25 * 1024 * 1024 // 256)
    encoded = base64.encodebytes(payload)
    raw = (
        b"From: a@example.org\nSubject: big\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain\n\nsee attachment\n"
        b'--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="big.bin"\n'
        b"Content-Transfer-Encoding: base64\n\n" + encoded + b"--B--\n"
    )
    message = parse_message(raw)
    (attachment,) = message.attachments
    assert attachment.filename == "big.bin"
    assert attachment.size == len(payload)
    assert attachment.data == payload
    assert message.body == "see attachment"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.doc", "y.doc"),
        ("..", "attachment-4.bin"),
        ("", "attachment-4.bin"),
        (None, "attachment-4.bin"),
        ("   ", "attachment-4.bin"),
        ("a..b.txt", "a.b.txt"),
        ("in\x00voice\x1b.pdf", "invoice.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ('what?<is>"this".txt', "what__is__this_.txt"),
        ("CON.txt", "_CON.txt"),
        (".hidden", "hidden"),
    ],
)
def test_sanitize_filename(name: str | None, expected: str) -> None:
    assert sanitize_filename(name, 4) == expected


def test_sanitize_filename_keeps_the_extension_of_a_long_name() -> None:
    name = sanitize_filename("x" * 300 + ".pdf", 1)
    assert len(name) == 200
    assert name.endswith(".pdf")


# --- auto-replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("auto_replied.eml", "Auto-Submitted: auto-replied"),
        ("precedence_bulk.eml", "Precedence: bulk"),
        ("x_autoreply.eml", "X-Autoreply header present"),
        ("x_loop.eml", "X-Loop names our address helpdesk@example.com"),
        ("list_id.eml", "mailing list (List-Id: Users of the thing <users.lists.example.org>)"),
        ("disposition_notification.eml", "read receipt (disposition notification)"),
    ],
)
def test_machine_sent_mail_is_auto_submitted_with_its_reason(fixture: str, reason: str) -> None:
    message = parse_fixture(fixture)
    assert message.auto_submitted
    assert message.auto_submitted_reason == reason
    assert not message.is_bounce


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Precedence: junk", "Precedence: junk"),
        ("Precedence: list", "Precedence: list"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),
        ("X-Autorespond: vacation", "X-Autorespond header present"),
        ("Auto-Submitted: auto-generated (monitor)", "Auto-Submitted: auto-generated (monitor)"),
    ],
)
def test_other_auto_reply_headers_are_recognised(header: str, reason: str) -> None:
    message = parse_message(f"From: a@example.org\n{header}\nSubject: x\n\nbody\n".encode())
    assert message.auto_submitted_reason == reason


def test_precedence_normal_is_not_an_auto_reply() -> None:
    assert not parse_message(b"From: a@example.org\nPrecedence: normal\n\nbody\n").auto_submitted


def test_auto_submitted_no_marks_a_person() -> None:
    raw = fixture_bytes("auto_submitted_no.eml").replace(b"X-Auto-Response-Suppress: All\n", b"")
    message = parse_message(raw)
    assert not message.auto_submitted
    assert message.auto_submitted_reason is None


def test_x_auto_response_suppress_all_gets_no_automatic_answer_even_with_auto_submitted_no() -> None:
    message = parse_fixture("auto_submitted_no.eml")
    assert message.auto_submitted
    assert message.auto_submitted_reason == "X-Auto-Response-Suppress: All"


def test_x_loop_naming_someone_else_is_not_a_loop() -> None:
    message = parse_message(fixture_bytes("x_loop.eml"), our_addresses=("desk@other.example",))
    assert not message.auto_submitted


def test_null_return_path_is_auto_submitted() -> None:
    message = parse_message(b"Return-Path: <>\nFrom: robot@example.org\nSubject: hello\n\nx\n")
    assert message.auto_submitted_reason == "null sender (Return-Path: <>)"


# --- bounces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("dsn_550.eml", 550),
        ("dsn_553.eml", 553),
        ("bounce_qmail_550.eml", 550),
        ("bounce_postfix_501.eml", 501),
        ("bounce_exim_503.eml", 503),
        ("bounce_552.eml", 552),
    ],
)
def test_bounce_is_recognised_with_its_smtp_code(fixture: str, code: int) -> None:
    message = parse_fixture(fixture)
    assert message.is_bounce
    assert message.bounce_code == code
    assert message.auto_submitted


def test_dsn_keeps_its_human_text_as_body_and_the_returned_mail_as_attachment() -> None:
    message = parse_fixture("dsn_550.eml")
    assert message.body.startswith("This is the mail system at host mx.example.com.")
    assert [a.filename for a in message.attachments] == ["[CALL#42] Your call was received.eml"]


def test_delayed_delivery_report_is_a_bounce_with_a_4xx_code() -> None:
    raw = fixture_bytes("dsn_553.eml").replace(b"Action: failed", b"Action: delayed")
    raw = raw.replace(b"Status: 5.1.8", b"Status: 4.4.1").replace(b"553 5.1.8", b"451 4.4.1")
    message = parse_message(raw)
    assert message.is_bounce
    assert message.bounce_code == 451


def test_successful_delivery_report_is_not_a_bounce() -> None:
    message = parse_fixture("dsn_relayed.eml")
    assert not message.is_bounce
    assert message.bounce_code is None


def test_bounce_with_only_an_enhanced_status_code_gets_the_reply_code_it_stands_for() -> None:
    raw = b"From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\n\nSorry, no mailbox here (#5.1.1)\n"
    message = parse_message(raw)
    assert message.is_bounce
    assert message.bounce_code == 550


def test_bounce_without_any_smtp_code_has_no_code() -> None:
    raw = b"From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\n\nSorry, it did not work out.\n"
    message = parse_message(raw)
    assert message.is_bounce
    assert message.bounce_code is None


def test_smtp_codes_inside_the_returned_copy_are_ignored() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\n\n"
        b"Sorry, no mailbox here by that name.\n\n--- Below this line is a copy of the message.\n\n"
        b"Subject: 550 things\n\nThe server said: 550 5.1.1 earlier\n"
    )
    message = parse_message(raw)
    assert message.is_bounce
    assert message.bounce_code is None


def test_person_writing_about_an_error_code_is_not_a_bounce() -> None:
    raw = b"From: dave@example.org\nSubject: Error 550 when sending\n\nI get 550 5.1.1 from the server.\n"
    message = parse_message(raw)
    assert not message.is_bounce
    assert message.bounce_code is None


# --- reply_portion ---------------------------------------------------------------------------


def test_reply_portion_drops_an_english_quote_header_and_quote() -> None:
    assert reply_portion(parse_fixture("reply_quoted_en.eml").body) == "Thanks, it works again."


def test_reply_portion_drops_a_german_quote_header_and_quote() -> None:
    assert reply_portion(parse_fixture("reply_quoted_de.eml").body) == "Danke, der Drucker geht wieder."


def test_reply_portion_drops_an_outlook_original_message() -> None:
    assert reply_portion(parse_fixture("reply_outlook.eml").body) == "Still broken, please call me."


def test_reply_portion_returns_a_body_without_quotes_unchanged() -> None:
    body = "  Indented first line\nsecond line"
    assert reply_portion(body) == body
    assert reply_portion("") == ""

"""Mail as real clients write it, beyond the plain-text forms: HTML-only replies and odd MIME.

Each fixture in tests/fixtures/mail/clients/ is written as that client writes it (its HTML, its
MIME layout); our own mail is the quoted copy, the person's words are what must stay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.mail.message import IncomingMessage, parse_message, reply_portion

CLIENTS = Path(__file__).resolve().parent.parent / "fixtures" / "mail" / "clients"
OURS = ["Your email has been logged as call 100: Printer jams.", "Thank you for contacting the service desk."]


def _parse(name: str) -> IncomingMessage:
    return parse_message((CLIENTS / name).read_bytes(), our_addresses=("helpdesk@example.com",))


@pytest.mark.parametrize(
    ("fixture", "new"),
    [
        ("reply_html_gmail_top.eml", ["The printer now shows E42."]),
        ("reply_html_gmail_bottom_de.eml", ["Der Drucker zeigt jetzt E42."]),
        ("reply_html_gmail_interleaved.eml", ["See inline.", "Yes, it is the one on floor 2.", "Thanks!"]),
        ("reply_html_iphone_fr.eml", ["Le problème persiste."]),
        (
            "reply_html_thunderbird_interleaved.eml",
            ["Still broken, see below.", "Also the scanner is offline."],
        ),
    ],
)
def test_html_only_reply_keeps_the_new_text_and_drops_our_cited_copy(fixture: str, new: list[str]) -> None:
    message = _parse(fixture)

    text = reply_portion(message.body)

    assert message.body_was_html
    for line in new:
        assert line in text, f"the person's line {line!r} was lost: {text!r}"
    for line in OURS:
        assert line not in text, f"our quoted line {line!r} was kept: {text!r}"
    assert "wrote:" not in text and "schrieb" not in text and "a écrit" not in text


def test_an_html_blockquote_that_only_indents_stays_the_persons_words() -> None:
    text = reply_portion(_parse("reply_html_gmail_indent.eml").body)

    assert "switched it off and on again" in text
    assert "and reloaded the paper tray" in text
    assert "Regards, Ada" in text
    assert OURS[0] not in text


@pytest.mark.parametrize(
    ("fixture", "words", "attachment"),
    [
        (
            "apple_mail_text_around_an_attachment.eml",
            [
                "Here is the log from the printer:",
                "And the error started after the firmware update on Friday.",
            ],
            "printer.pdf",
        ),
        (
            "html_text_around_an_inline_image.eml",
            ["The screen shows this:", "It appears every morning at 9."],
            "screen.png",
        ),
        (
            "alternatives_around_an_attachment.eml",
            ["First the overview.", "Then the details after the plan."],
            "plan.pdf",
        ),
    ],
)
def test_text_written_after_an_inline_attachment_stays_in_the_body(
    fixture: str, words: list[str], attachment: str
) -> None:
    message = _parse(fixture)

    for line in words:
        assert line in message.body, f"{line!r} was lost: {message.body!r}"
    assert message.body.index(words[0]) < message.body.index(words[1])
    assert message.body.count(words[0]) == 1
    assert [a.filename for a in message.attachments] == [attachment]


def test_an_inline_text_file_is_an_attachment_and_the_html_text_is_the_body() -> None:
    message = _parse("html_body_with_an_inline_text_file.eml")

    assert message.body == "The VPN drops every ten minutes, log attached."
    assert message.body_was_html
    assert [(a.filename, a.data) for a in message.attachments] == [("vpn.log", b"12:00:01 tunnel down")]


def test_a_persons_dashed_heading_or_line_of_underscores_cuts_none_of_their_words() -> None:
    text = reply_portion(_parse("reply_with_headings_in_the_persons_text.eml").body)

    for line in (
        "-------- Error log --------",
        "E42 paper jam in tray 2",
        "E43 toner low",
        "Steps I took: restarted it twice and reloaded the paper.",
        "--- Wo ---",
        "Raum 12, zweiter Stock",
    ):
        assert line in text, f"the person's line {line!r} was lost: {text!r}"
    assert OURS[0] not in text and "wrote:" not in text


def test_a_persons_sentence_that_starts_like_sent_from_my_iphone_is_kept() -> None:
    text = reply_portion(_parse("reply_with_sent_from_sentences.eml").body)

    assert text == (
        "Sent from home, the VPN does not connect.\n"
        "Von meinem Laptop aus geht auch der Drucker nicht.\n\n"
        "从我的电脑也无法打印。"
    )


def test_only_the_human_part_of_a_delivery_report_is_its_body() -> None:
    message = _parse("report_with_the_returned_mail_as_text.eml")

    assert message.body.startswith("I'm sorry to have to inform you")
    assert "Your call 100 has been updated" not in message.body
    assert (message.is_bounce, message.bounce_code) == (True, 550)


def test_the_persons_line_right_above_a_quote_header_is_not_taken_for_its_first_part() -> None:
    text = reply_portion(_parse("reply_without_a_blank_line_before_the_header.eml").body)

    assert text == "\n".join(
        ["Hello,", "the printer in room 12 still jams", "please send someone over to fix it this afternoon"]
    )

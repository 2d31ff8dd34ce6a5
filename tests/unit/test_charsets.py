"""Every charset a real mailer sends: ISO-2022-JP with vendor extensions, undeclared 8-bit text, names.

The fixtures are written here byte by byte, as each mailer writes them (labels, escapes, encoded
words), not produced by the standard library's writer, which would normalise them.
"""

from __future__ import annotations

import base64
from pathlib import Path

from engine.mail.charsets import decode_iso2022_jp
from engine.mail.message import IncomingMessage, parse_message


def _iso2022_jp(text: str) -> bytes:
    """ISO-2022-JP as Outlook writes it: JIS X 0208 codes, NEC row 13 and IBM extensions included."""
    out = b""
    for char in text:
        try:
            out += char.encode("iso2022_jp")
            continue
        except UnicodeEncodeError:
            pass
        lead, trail = char.encode("cp932")  # the same code, moved from Shift_JIS to JIS
        lead -= 0xC1 if lead >= 0xE0 else 0x81
        if trail >= 0x9F:
            first, second = lead * 2 + 0x22, trail - 0x7E
        else:
            first, second = lead * 2 + 0x21, trail - 0x1F - (1 if trail >= 0x7F else 0)
        out += b"\x1b$B" + bytes((first, second)) + b"\x1b(B"
    return out


def _mail(*headers: str, body: bytes = b"hi\r\n", content_type: str = "text/plain") -> IncomingMessage:
    head = [
        "To: helpdesk@example.com",
        "Message-ID: <charset@mail.example>",
        f"Content-Type: {content_type}",
        *headers,
    ]
    if not any(h.startswith("From:") for h in headers):
        head.insert(0, "From: ada@example.com")
    if not any(h.startswith("Subject:") for h in headers):
        head.append("Subject: test")
    return parse_message("\r\n".join(head).encode() + b"\r\n\r\n" + body)


def test_outlook_iso_2022_jp_with_nec_row_13_decodes_the_whole_body() -> None:
    text = "会議室は①番です。㈱テストの件、よろしくお願いします。"
    message = _mail(body=_iso2022_jp(text) + b"\r\n", content_type='text/plain; charset="iso-2022-jp"')

    assert message.body.strip() == text
    assert "$B" not in message.body
    assert message.problems == ()


def test_iso_2022_jp_subject_with_an_nec_character_decodes() -> None:
    encoded = base64.b64encode(_iso2022_jp("①プリンター故障")).decode()
    message = _mail(f"Subject: =?ISO-2022-JP?B?{encoded}?=")

    assert message.subject == "①プリンター故障"


def test_an_iso_2022_jp_code_no_table_knows_costs_only_that_character() -> None:
    data = _iso2022_jp("前") + b"\x1b$B\x7e\x7e\x1b(B" + _iso2022_jp("後です")

    text, unknown = decode_iso2022_jp(data)

    assert (text, unknown) == ("前\ufffd後です", 1)
    message = _mail(body=data, content_type="text/plain; charset=iso-2022-jp")
    assert message.body.strip() == "前\ufffd後です"
    assert message.problems == ("1 characters of ISO-2022-JP could not be decoded",)


def test_undeclared_gbk_body_is_detected_not_mojibake() -> None:
    text = "你好，打印机坏了，请尽快派人来修理。谢谢！"
    message = _mail(body=text.encode("gbk"))  # no charset at all

    assert message.body.strip() == text


def test_gb2312_label_on_gbk_text_decodes_the_characters_outside_gb2312() -> None:
    text = "朱镕基和陶喆的邮件"  # 镕 and 喆 are GBK, not GB2312
    message = _mail(body=text.encode("gbk"), content_type="text/plain; charset=gb2312")

    assert message.body.strip() == text
    assert message.problems == ()


def test_ks_c_5601_1987_korean_decodes() -> None:
    text = "프린터가 고장났습니다. 도와주세요."
    message = _mail(body=text.encode("cp949"), content_type="text/plain; charset=ks_c_5601-1987")

    assert message.body.strip() == text


def test_x_unknown_label_on_korean_text_is_detected() -> None:
    text = "프린터가 고장났습니다. 빨리 도와주세요."
    message = _mail(body=text.encode("cp949"), content_type="text/plain; charset=x-unknown")

    assert message.body.strip() == text
    assert message.problems == ("unknown charset X-UNKNOWN, decoded as cp949 (detected)",)


def test_undeclared_8bit_subject_is_read_in_the_bodys_charset() -> None:
    subject = "Принтер сломался"
    raw = (
        b"From: ivan@example.ru\r\nTo: helpdesk@example.com\r\nMessage-ID: <ru@mail.example>\r\n"
        b"Subject: " + subject.encode("koi8-r") + b"\r\n"
        b"Content-Type: text/plain; charset=koi8-r\r\n\r\n" + "Помогите".encode("koi8-r") + b"\r\n"
    )

    assert parse_message(raw).subject == subject


def test_undeclared_8bit_attachment_name_is_detected() -> None:
    name = "見積書_最終版.pdf"
    raw = (
        b"From: ada@example.com\r\nTo: helpdesk@example.com\r\nMessage-ID: <att@mail.example>\r\n"
        b"Subject: quote\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\n"
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + name.encode("cp932")
        + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n'
    )

    [attachment] = parse_message(raw).attachments
    assert attachment.filename == name


def test_the_comment_form_addr_name_gives_the_display_name() -> None:
    assert _mail("From: ada@example.com (Ada Lovelace)").from_name == "Ada Lovelace"


def test_whitespace_between_adjacent_encoded_words_is_dropped_in_display_names() -> None:
    message = _mail("From: =?utf-8?q?Ad=C3=A9?=   =?iso-8859-1?q?l=E9?= <ada@example.com>")

    assert message.from_name == "Adélé"


def test_whitespace_between_adjacent_encoded_words_is_dropped_in_subjects() -> None:
    message = _mail(
        "Subject: =?utf-8?q?Drucker_?= =?iso-8859-1?q?kaputt_f=FCr?=\r\n =?utf-8?q?_M=C3=BCller?="
    )

    assert message.subject == "Drucker kaputt für Müller"


def test_utf8_text_under_a_single_byte_label_is_read_as_utf8_and_noted() -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "mail" / "clients"
    message = parse_message((fixture / "utf8_under_a_latin1_label.eml").read_bytes())

    assert message.body == "Der Drucker im Büro zeigt „Fehler 42“ – bitte prüfen.\nGrüße, Jörg"
    assert message.subject == "Drucker im Büro"
    assert message.from_name == "Jörg Müller"
    assert "text declared iso-8859-1 is UTF-8, decoded as utf-8" in message.problems


def test_8bit_text_in_its_single_byte_charset_is_read_in_it_without_a_problem() -> None:
    for label, text in (
        ("windows-1252", "Grüße – Jörg"),
        ("iso-8859-1", "Grüße, Jörg"),
        ("koi8-r", "Принтер не работает"),
        ("windows-1251", "Принтер не работает"),
        ("iso-8859-2", "Drukarka nie działa, proszę sprawdzić"),
    ):
        codec = {"iso-8859-1": "latin-1"}.get(label, label)
        message = _mail(body=text.encode(codec), content_type=f"text/plain; charset={label}")
        assert (message.body, message.problems) == (text, ()), label


def test_an_rfc2231_file_name_in_utf8_under_a_single_byte_label_is_read_as_utf8() -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "mail" / "clients"
    message = parse_message((fixture / "rfc2231_utf8_name_under_a_latin1_label.eml").read_bytes())

    assert [a.filename for a in message.attachments] == ["Prüfbericht Köln.pdf"]
    assert "attachment name: text declared iso-8859-1 is UTF-8, decoded as utf-8" in message.problems

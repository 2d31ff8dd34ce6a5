"""Big base64 bodies are set aside before parsing and decoded from the raw bytes (mail/big_base64.py)."""

from __future__ import annotations

import base64
import random
import tracemalloc
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from engine.mail import big_base64
from engine.mail.big_base64 import SET_ASIDE_BYTES, set_aside
from engine.mail.message import IncomingMessage, parse_message

MB = 1024 * 1024


def _mail_with_attachment(data: bytes, *, filename: str = "big.bin") -> bytes:
    message = EmailMessage()
    message["From"] = "Ann Smith <ann@example.com>"
    message["To"] = "desk@example.com"
    message["Subject"] = "Big file"
    message["Message-ID"] = "<big-1@example.com>"
    message.set_content("Hello,\n\nthe file is attached.\n")
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return message.as_bytes()


def _parsed_without_set_aside(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> IncomingMessage:
    with monkeypatch.context() as patch:
        patch.setattr(big_base64, "SET_ASIDE_BYTES", 1 << 40)
        return parse_message(raw)


@pytest.mark.parametrize("size", [SET_ASIDE_BYTES, 150 * 1024, 3 * MB])
def test_big_base64_attachment_decodes_to_the_same_message_as_a_full_parse(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = random.Random(1).randbytes(size)
    raw = _mail_with_attachment(data)
    _, aside = set_aside(raw)
    assert aside is not None and len(aside.spans) == 1
    parsed = parse_message(raw)
    assert parsed == _parsed_without_set_aside(raw, monkeypatch)
    assert parsed.attachments[0].data == data
    assert parsed.body == "Hello,\n\nthe file is attached."


def test_set_aside_leaves_a_message_under_the_threshold_unchanged() -> None:
    raw = _mail_with_attachment(b"x" * 1000)
    assert set_aside(raw) == (raw, None)


def test_big_attachment_parses_within_a_small_multiple_of_its_size() -> None:
    size = 8 * MB
    raw = _mail_with_attachment(random.Random(2).randbytes(size))
    tracemalloc.start()
    try:
        parsed = parse_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.attachments[0].size == size
    # the decoded attachment itself, and little else: a full parse peaks near nine times its size
    assert peak < 1.5 * size, f"parsing peaked at {peak / size:.1f} x the attachment"


def test_base64_looking_lines_in_a_text_part_come_back_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = "".join(f"Line{n}word\n" for n in range(SET_ASIDE_BYTES // 8))
    message = EmailMessage()
    message["From"] = "ann@example.com"
    message["Subject"] = "Long list"
    message.set_content(lines, cte="8bit")
    raw = message.as_bytes()
    assert set_aside(raw)[1] is not None  # the text lines look like base64 and are set aside
    parsed = parse_message(raw)
    assert parsed.body == lines.rstrip("\n")
    assert parsed == _parsed_without_set_aside(raw, monkeypatch)


def test_embedded_message_with_a_big_attachment_keeps_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = _mail_with_attachment(random.Random(3).randbytes(2 * MB))
    outer = EmailMessage()
    outer["From"] = "bob@example.com"
    outer["Subject"] = "Fwd: Big file"
    outer.set_content("See the attached mail.\n")
    outer.add_attachment(message_from_bytes(inner, policy=policy.default))
    raw = outer.as_bytes()
    parsed = parse_message(raw)
    assert parsed == _parsed_without_set_aside(raw, monkeypatch)
    assert parsed.attachments[0].filename == "Big file.eml"
    assert base64.b64encode(random.Random(3).randbytes(2 * MB))[:76] in parsed.attachments[0].data


def test_broken_big_base64_is_repaired_as_a_full_parse_would(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = base64.encodebytes(random.Random(4).randbytes(2 * MB))
    broken = encoded.rstrip(b"=\n")[:-1] + b"\n"  # a length that is no multiple of four
    raw = (
        b"From: ann@example.com\nSubject: Broken\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nHi\n'
        b"--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="x.bin"\n\n' + broken + b"--b--\n"
    )
    parsed = parse_message(raw)
    assert parsed == _parsed_without_set_aside(raw, monkeypatch)
    assert "broken base64 data, decoded what was possible" in parsed.problems


def test_a_token_written_by_the_sender_is_left_as_it_is() -> None:
    forged = b"MAILGATEBIG0123456789abcdefN0"
    data = random.Random(5).randbytes(2 * MB)
    raw = _mail_with_attachment(data).replace(b"the file is attached.", forged)
    parsed = parse_message(raw)
    assert forged.decode() in parsed.body
    assert parsed.attachments[0].data == data

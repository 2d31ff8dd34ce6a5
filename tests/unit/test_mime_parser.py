"""engine.mail.mime_parser: the standard library's MIME parser, without a pattern per boundary."""

from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

import pytest

from engine.mail import mime_parser
from engine.mail.mime_parser import parse_mime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def _multipart(boundary: str, *, newline: str = "\r\n", close: str = "--", nested: bool = False) -> bytes:
    inner = ""
    if nested:
        inner = (
            f"--{boundary}{newline}"
            f'Content-Type: multipart/alternative; boundary="{boundary}x"{newline}{newline}'
            f"--{boundary}x{newline}Content-Type: text/plain{newline}{newline}inner{newline}"
            f"--{boundary}x--{newline}"
        )
    text = (
        f"From: ann@example.com{newline}Subject: parts{newline}"
        f'Content-Type: multipart/mixed; boundary="{boundary}"{newline}{newline}'
        f"preamble{newline}"
        f"--{boundary}{newline}Content-Type: text/plain{newline}{newline}first{newline}"
        f"--{boundary}x not a boundary, a longer line{newline}"
        f"--{boundary} \t{newline}Content-Type: text/plain{newline}{newline}second{newline}"
        f"{inner}"
        f"--{boundary}{close}{newline}epilogue{newline}"
    )
    return text.encode("utf-8")


def _shape(message: Message) -> list[object]:
    """Everything the parser read, part by part (a multipart's parts compared by their own shape)."""
    return [
        (
            part.get_content_type(),
            part.items(),
            None if part.is_multipart() else part.get_payload(),
            part.preamble,
            part.epilogue,
            [type(defect).__name__ for defect in part.defects],
        )
        for part in message.walk()
    ]


BOUNDARIES = [
    "simple",
    "with space",
    "re.*+?()[]{}|^$\\chars",
    "=_Part_0_12345.67890",
    "----=_NextPart_000_0001",
]


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("close", ["--", "-- \t", ""])
@pytest.mark.parametrize("nested", [False, True])
def test_a_multipart_mail_reads_as_the_standard_parser_reads_it(
    boundary: str, newline: str, close: str, nested: bool
) -> None:
    raw = _multipart(boundary, newline=newline, close=close, nested=nested)
    assert _shape(parse_mime(raw)) == _shape(BytesParser(policy=policy.compat32).parsebytes(raw))


def test_every_mail_fixture_reads_as_the_standard_parser_reads_it() -> None:
    mails = sorted(FIXTURES.rglob("*.eml"))
    assert len(mails) > 20
    for path in mails:
        raw = path.read_bytes()
        assert _shape(parse_mime(raw)) == _shape(BytesParser(policy=policy.compat32).parsebytes(raw)), path


def test_reading_a_multipart_mail_compiles_no_pattern_for_its_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[str] = []
    real = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(pattern)
        return real(pattern, flags)

    monkeypatch.setattr(mime_parser.re, "compile", counting)
    message = parse_mime(_multipart("unique-boundary-4711", nested=True))
    assert [part.get_payload() for part in message.walk() if not part.is_multipart()] == [
        "first\r\n--unique-boundary-4711x not a boundary, a longer line",
        "second",
        "inner",
    ]
    assert not [pattern for pattern in compiled if pattern.startswith("(?P<sep>")]

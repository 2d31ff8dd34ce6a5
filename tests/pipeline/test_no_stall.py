"""No message stalls the pipeline: hostile headers are quarantined with a reason naming the header,
and the time limit covers reading a message as well as deciding on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_desk import Desk, build_desk, make_mail

BODY = b"\n\nhello\n"


def hostile(*headers: bytes) -> bytes:
    return b"\n".join([*headers, b"Message-ID: <hostile@example.org>"]) + BODY


HOSTILE = {
    "from_of_quotes": (hostile(b"From: " + b'"' * 100_000), "From header of "),
    "from_of_letters": (hostile(b"From: " + b"a" * 150_000), "From header of "),
    "subject_of_1_mb": (
        hostile(b"From: a@example.org", b"Subject: " + b"\n ".join([b"s" * 998] * 1_000)),
        "Subject header of ",
    ),
    "10000_received": (
        hostile(b"From: a@example.org", *[b"Received: from r%d by mx" % i for i in range(10_000)]),
        "10,000 Received header fields ",
    ),
    "100000_in_to": (
        hostile(b"From: a@example.org", b"To: " + b", ".join(b"u%d@example.org" % i for i in range(100_000))),
        "To header of ",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_header_is_quarantined_naming_it_and_the_next_mail_is_processed(
    desk: Desk, name: str
) -> None:
    raw, reason = HOSTILE[name]
    held = desk.process(raw)
    assert held.outcome == "quarantined" and (held.reason or "").startswith(reason), held.reason
    assert held.key == "hostile@example.org"  # read from its bytes: the same mail again is a duplicate
    assert desk.process(raw).outcome == "duplicate"
    assert desk.process(make_mail()).outcome == "logged"


def test_reading_a_message_counts_towards_the_time_limit_and_the_next_is_processed(tmp_path: Path) -> None:
    desk = build_desk(tmp_path, limit=1)
    try:
        # a first ordinary mail pays the one-off costs (lazy imports, the first connection), so
        # that a loaded machine cannot push the ordinary mail after the slow one past the limit
        assert desk.process(make_mail(message_id="<warm@example.com>")).outcome == "logged"
        parts = b"--B\nContent-Type: text/plain\n\nx\n" * 300_000  # reading it takes far longer than 1 s
        slow = b"From: ada@example.com\nMessage-ID: <slow@example.com>\n"
        slow += b"Content-Type: multipart/mixed; boundary=B\n\n" + parts + b"--B--\n"
        held = desk.process(slow)
        assert (held.outcome, held.reason) == (
            "quarantined",
            "time limit of 1 s exceeded while reading the message",
        )
        assert held.key == "slow@example.com"
        assert desk.process(make_mail()).outcome == "logged"
    finally:
        desk.runtime.close()

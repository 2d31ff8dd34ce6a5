"""``mailgate message show``: a processed mail's original, as it arrived, and what it did (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MAILGATE = Path(sys.executable).parent / "mailgate"
RAW = (
    b"From: Ada <ada@example.com>\r\nTo: helpdesk@example.com\r\nSubject: Printer jams on A3\r\n"
    b"Message-ID: <kept@mail.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nHi,\r\n> quoted\r\n\r\nIt jams on A3 paper.\r\n"
)


def _mailgate(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([str(MAILGATE), *map(str, args)], cwd=cwd, capture_output=True, timeout=300)
    assert b"Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    """A fresh ``mailgate init`` installation that has processed one mail."""
    root = tmp_path / "desk"
    assert _mailgate("init", root, cwd=tmp_path).returncode == 0
    (root / "mail.eml").write_bytes(RAW)
    done = _mailgate("process", "--account", "helpdesk", "--json", "mail.eml", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_message_show_raw_prints_the_original_byte_for_byte(installation: Path) -> None:
    done = _mailgate("message", "show", "kept@mail.example", "--raw", cwd=installation)

    assert done.returncode == 0, done.stderr
    assert done.stdout == RAW


def test_message_show_says_what_the_mail_did_and_links_its_history_entry(installation: Path) -> None:
    done = _mailgate("message", "show", "<kept@mail.example>", cwd=installation)

    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert (view["message_id"], view["outcome"]) == ("kept@mail.example", "logged")
    assert view["original"]["size"] == len(RAW)
    [entry] = view["history_entries"]
    shown = json.loads(_mailgate("show", "call", str(entry["number"]), "--json", cwd=installation).stdout)
    assert [h["message_id"] for h in shown["history"]] == ["kept@mail.example"]


def test_message_show_of_an_unknown_id_says_so(installation: Path) -> None:
    done = _mailgate("message", "show", "nobody@mail.example", cwd=installation)

    assert done.returncode == 1
    assert b"no kept original for 'nobody@mail.example'" in done.stderr

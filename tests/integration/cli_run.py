"""Running the real ``mailgate`` console script in a test's folder, shared by the CLI tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MAILGATE = str(Path(sys.executable).with_name("mailgate"))

NO_SENDER = b"To: helpdesk@example.com\nSubject: who am I\nMessage-ID: <anon-%d@example.com>\n\nHello\n"
NEW_CALL = (
    b"From: ada@example.com\nTo: helpdesk@example.com\nSubject: printer jams\n"
    b"Message-ID: <call-1@example.com>\n\nIt jams.\n"
)


def run(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run mailgate in ``cwd``; by default it must succeed; never a traceback."""
    done = subprocess.run([MAILGATE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def json_lines(text: str) -> list[dict[str, object]]:
    """The objects of a ``--json`` listing."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]

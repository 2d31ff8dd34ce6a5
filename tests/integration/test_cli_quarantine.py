"""``mailgate quarantine list|show|retry`` through the real console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli_run import MAILGATE, run

NO_SENDER = b"To: helpdesk@example.com\nSubject: who am I\nMessage-ID: <anon-1@example.com>\n\nHello\n"
GOOD = (
    b"From: ada@example.com\nTo: helpdesk@example.com\nSubject: printer\n"
    b"Message-ID: <ok-1@example.com>\n\nHi\n"
)


def test_quarantined_message_is_listed_shown_and_replayed_after_fixing_the_pack(tmp_path: Path) -> None:
    run(tmp_path, "init", ".")
    # a pack that handles nothing but calls' updates: an unrecognised subject matches no rule
    (tmp_path / "rules" / "local.yaml").write_text("extends: default\nremove: [log_new_call]\n")
    (tmp_path / "no-sender.eml").write_bytes(NO_SENDER)
    (tmp_path / "good.eml").write_bytes(GOOD)
    lines = run(tmp_path, "process", "--account", "helpdesk", "--json", "no-sender.eml", "good.eml").stdout
    results = [json.loads(line) for line in lines.splitlines()]
    assert [r["outcome"] for r in results] == ["quarantined", "quarantined"]

    listed = [json.loads(line) for line in run(tmp_path, "quarantine", "list", "--json").stdout.splitlines()]
    assert [e["status"] for e in listed] == ["held", "held"]
    assert "From" in listed[0]["reason"] and "no rule" in listed[1]["reason"]

    shown = json.loads(run(tmp_path, "quarantine", "show", str(listed[1]["id"])).stdout)
    assert shown["message_key"] == "ok-1@example.com"
    raw = subprocess.run(
        [MAILGATE, "quarantine", "show", "--raw", str(listed[1]["id"])], cwd=tmp_path, capture_output=True
    ).stdout
    assert raw == GOOD, "the whole message is kept, byte for byte"

    still = run(tmp_path, "quarantine", "retry", str(listed[0]["id"]), ok=False)
    assert still.returncode == 1 and "still quarantined" in still.stdout

    (tmp_path / "rules" / "local.yaml").write_text("extends: default\n")
    released = json.loads(run(tmp_path, "quarantine", "retry", "--json", str(listed[1]["id"])).stdout)
    assert released["released"] is True and released["outcome"] == "logged" and released["entity"] == "call"
    call = json.loads(run(tmp_path, "show", "call", str(released["number"]), "--json").stdout)
    assert call["user"] == "ada@example.com"

    again = run(tmp_path, "process", "--account", "helpdesk", "--json", "good.eml").stdout
    assert json.loads(again)["outcome"] == "duplicate", "a released message delivered again is a duplicate"
    missing = run(tmp_path, "quarantine", "retry", "999", ok=False)
    assert missing.returncode == 1 and "no quarantine entry 999" in missing.stderr

"""``mailgate run`` and ``mailgate status`` as real processes over folder mailboxes: crashes, signals, output.

The crash and the stop request use the service's test-only hooks: with
``MAILGATE_TEST_SIGNAL_AFTER_COMMIT=K:SIGNAME`` the process sends itself the signal right after the
commit that keeps the K-th message (its batch's) and before any acknowledgement, the one moment where
a crash could act twice; with ``MAILGATE_TEST_SIGNAL_AFTER_MESSAGE=K:SIGNAME``, as soon as the K-th
message is done, before its batch is committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from service_desk import WAIT_LIMIT, ServiceDesk, account_yaml, build_service_desk, make_mail

from engine.service.runner import TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV

MAILGATE = Path(sys.executable).parent / "mailgate"


def _deliver(folder: Path, numbers: range | list[int]) -> None:
    """Write mails as ``NNN.eml`` with increasing modification times (the folder's oldest-first order)."""
    folder.mkdir(exist_ok=True)
    start = time.time() - 1000
    for offset, number in enumerate(numbers):
        path = folder / f"{number:03d}.eml"
        path.write_bytes(make_mail(number))
        os.utime(path, (start + offset, start + offset))


def _waiting(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.eml"))


def _env(**extra: str) -> dict[str, str]:
    hooks = (TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV)
    env = {k: v for k, v in os.environ.items() if k not in hooks}
    return {**env, **extra}


def _mailgate(desk: ServiceDesk, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MAILGATE), "--config", str(desk.config_path), *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=120,
    )


def _start(desk: ServiceDesk, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(MAILGATE), "--config", str(desk.config_path), "-v", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_LIMIT:g} s waiting for {what}")
        time.sleep(0.05)


def _folder_desk(tmp_path: Path, poll: float = 3600) -> ServiceDesk:
    return build_service_desk(tmp_path, account_yaml("helpdesk", "{type: folder, path: inbox}", poll=poll))


def test_a_crash_between_commit_and_acknowledgement_does_not_act_twice_after_restart(tmp_path: Path) -> None:
    desk = _folder_desk(tmp_path)
    inbox = tmp_path / "inbox"
    _deliver(inbox, range(1, 6))

    crashed = _mailgate(desk, "-v", "run", "--once", **{TEST_SIGNAL_AFTER_COMMIT_ENV: "3:SIGKILL"})

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # the five were one batch: all committed together, none deleted
    assert [e.message_id for e in desk.ledger()] == [f"m{n}@example.com" for n in range(1, 6)]
    assert _waiting(inbox) == ["001.eml", "002.eml", "003.eml", "004.eml", "005.eml"]

    restarted = _mailgate(desk, "-v", "run", "--once")

    assert restarted.returncode == 0, restarted.stderr
    assert "event=processed account=helpdesk uid=003.eml outcome=duplicate" in restarted.stderr
    assert _waiting(inbox) == []
    assert desk.call_count() == 5  # one call per mail: none was logged twice
    assert [e.message_id for e in desk.ledger()] == [f"m{n}@example.com" for n in range(1, 6)]
    assert "helpdesk: 5 processed (5 duplicate)" in restarted.stdout


def test_a_crash_before_the_batch_commit_keeps_nothing_and_the_restart_does_it_all_once(
    tmp_path: Path,
) -> None:
    desk = _folder_desk(tmp_path)
    inbox = tmp_path / "inbox"
    _deliver(inbox, range(1, 6))

    crashed = _mailgate(desk, "-v", "run", "--once", **{TEST_SIGNAL_AFTER_MESSAGE_ENV: "3:SIGKILL"})

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert desk.ledger() == [] and desk.call_count() == 0  # three were done, none committed
    assert len(_waiting(inbox)) == 5

    restarted = _mailgate(desk, "-v", "run", "--once")

    assert restarted.returncode == 0, restarted.stderr
    assert "helpdesk: 5 processed (5 logged)" in restarted.stdout
    assert desk.call_count() == 5
    assert _waiting(inbox) == []


def test_sigterm_during_a_batch_finishes_the_message_in_hand_commits_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    desk = _folder_desk(tmp_path)
    inbox = tmp_path / "inbox"
    _deliver(inbox, range(1, 6))

    service = _start(desk, **{TEST_SIGNAL_AFTER_MESSAGE_ENV: "3:SIGTERM"})
    _, stderr = service.communicate(timeout=120)

    assert service.returncode == 0, stderr
    assert [e.message_id for e in desk.ledger()] == ["m1@example.com", "m2@example.com", "m3@example.com"]
    assert _waiting(inbox) == ["004.eml", "005.eml"]  # 3 acknowledged; nothing after it begun
    assert "event=stopping signal=SIGTERM" in stderr
    assert "event=service_stopped" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_waiting_service_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    desk = _folder_desk(tmp_path)
    inbox = tmp_path / "inbox"
    _deliver(inbox, [1, 2])
    service = _start(desk)
    try:
        _wait_for(lambda: not _waiting(inbox), "the service to empty the mailbox")
        _wait_for(lambda: desk.status("helpdesk") is not None, "the pass to be recorded")
    finally:
        service.send_signal(signum)
        _, stderr = service.communicate(timeout=60)

    assert service.returncode == 0, stderr
    assert f"event=stopping signal={signum.name}" in stderr
    assert "event=service_stopped" in stderr
    assert "Traceback" not in stderr
    assert desk.call_count() == 2


def test_run_once_reports_a_failed_account_with_status_1_and_mailgate_status_shows_it(tmp_path: Path) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("helpdesk", "{type: folder, path: inbox}")
        + account_yaml("missing", "{type: folder, path: nowhere}")
        + account_yaml("dormant", "{type: folder, path: inbox}", active=False),
    )
    _deliver(tmp_path / "inbox", [1, 2])

    once = _mailgate(desk, "run", "--once")

    assert once.returncode == 1
    lines = once.stdout.splitlines()
    assert lines[0] == "helpdesk: 2 processed (2 logged)"
    assert lines[1].startswith("missing: FAILED (retrying) after 0 processed: mailbox folder ")
    assert "does not exist" in lines[1] and len(lines) == 2
    # failures are logged without -v; each line is one greppable event
    assert "event=poll_failed account=missing error=" in once.stderr
    assert "Traceback" not in once.stderr + once.stdout

    status = _mailgate(desk, "status")
    assert status.returncode == 3, status.stderr  # no service has run: only `run --once`
    service, *table = status.stdout.splitlines()
    assert service == "SERVICE: never started on this database"
    header = ["ACCOUNT", "STATE", "LAST", "POLL", "PROCESSED", "HELD", "BY", "LAST", "ERROR"]
    assert table[0].split() == header
    helpdesk, missing, dormant = (line.split() for line in table[1:])
    assert helpdesk[:2] == ["helpdesk", "ok"] and helpdesk[4:] == ["2", "-", "-"]  # held by none now
    assert missing[:5] == ["missing", "retrying", "never", "0", "-"] and "does not exist" in table[2]
    assert dormant[:6] == ["dormant", "inactive", "never", "0", "-", "-"]

    rows = [json.loads(line) for line in _mailgate(desk, "status", "--json").stdout.splitlines()]
    assert [(r["account"], r["state"], r["processed"]) for r in rows] == [
        ("helpdesk", "ok", 2),
        ("missing", "retrying", 0),
        ("dormant", "inactive", 0),
    ]
    assert rows[0]["last_poll"] is not None and rows[0]["last_error"] is None
    assert rows[1]["last_poll"] is None and "does not exist" in rows[1]["last_error"]
    assert rows[1]["last_error_at"] is not None


def test_run_refuses_a_config_without_an_active_account(tmp_path: Path) -> None:
    desk = build_service_desk(tmp_path, account_yaml("dormant", "{type: folder, path: inbox}", active=False))

    result = _mailgate(desk, "run", "--once")

    assert result.returncode == 1
    assert result.stderr.startswith("mailgate: no active account in ")
    assert "Traceback" not in result.stderr

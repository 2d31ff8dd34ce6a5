"""``mailgate status`` as a check: its exit status says whether the service runs (its heartbeat)
and whether an account fails, and an account taken out of the config never passes for ok."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from e2e_desk import Mailbox, MakeDesk, account_yaml, alive, connector_yaml, running, wait_for

HEARTBEAT = "service:\n  heartbeat_seconds: 0.5\n"  # `mailgate status`: stale after 2 s without one


def test_status_says_a_killed_service_is_not_running_and_a_removed_account_is_not_ok(
    make_desk: MakeDesk, mailbox: Mailbox, tmp_path: Path
) -> None:
    (tmp_path / "sales-mail").mkdir()
    sales = account_yaml("sales", f"{{type: folder, path: {tmp_path / 'sales-mail'}}}", poll=1)
    desk = make_desk(
        account_yaml("helpdesk", connector_yaml(mailbox, "imap"), poll=1) + sales, extra=HEARTBEAT
    )
    log = tmp_path / "run.log"
    with running(desk, log) as process:

        def both_polled_and_healthy() -> bool:
            alive(process, log)
            answer = desk.mailgate("status", "--json")
            rows = [json.loads(line) for line in answer.stdout.splitlines()]
            return answer.returncode == 0 and [(r["account"], r["state"], r["service"]) for r in rows] == [
                ("helpdesk", "ok", "running"),
                ("sales", "ok", "running"),
            ]

        wait_for(both_polled_and_healthy, "mailgate status to exit 0 while the service runs")
        assert desk.mailgate("status").stdout.startswith("SERVICE: running on ")
        process.send_signal(signal.SIGKILL)  # no clean stop: only the heartbeat stops
        process.wait(timeout=30)

        def stale() -> bool:
            answer = desk.mailgate("status")
            return answer.returncode == 3 and answer.stdout.startswith(
                "SERVICE: not running: no heartbeat since"
            )

        wait_for(stale, "mailgate status to see the heartbeat stale")

    # sales is taken out of the config: its stored status must not pass for a healthy account
    desk.config_path.write_text(desk.config_path.read_text().replace(sales, ""), encoding="utf-8")
    answer = desk.mailgate("status", "--json")
    assert answer.returncode == 3, answer.stderr
    rows = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [(r["account"], r["state"], r["active"], r["failing"]) for r in rows] == [
        ("helpdesk", "ok", True, False),
        ("sales", "removed", None, False),
    ]
    table = desk.mailgate("status").stdout.splitlines()
    assert table[-1].split()[:2] == ["sales", "removed"]

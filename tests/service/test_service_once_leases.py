"""`mailgate run --once` keeps its leases through a pass longer than a lease's term."""

from __future__ import annotations

import time
from pathlib import Path

from service_desk import account_yaml, build_service_desk, make_mail, run_async

from engine.service import Service


def test_a_once_pass_longer_than_a_lease_term_keeps_its_leases_and_processes_everything(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for number in range(1, 151):  # three batches of 50
        (inbox / f"{number:04d}.eml").write_bytes(make_mail(number))
    accounts = account_yaml("helpdesk", "{type: folder, path: inbox}")
    # lease_seconds 1: a lease runs 0.6 s after each renewal; each batch below takes longer
    desk = build_service_desk(
        tmp_path, accounts, database="sqlite:///mailgate.sqlite\nservice: {lease_seconds: 1}"
    )
    try:
        service = Service(desk.runtime, after_commit=lambda committed: time.sleep(0.8))
        [report] = run_async(service.run_once())
        assert (report.error, report.processed) == (None, 150)
        assert len(desk.ledger("helpdesk")) == 150
        assert list(inbox.glob("*.eml")) == []
    finally:
        desk.runtime.close()

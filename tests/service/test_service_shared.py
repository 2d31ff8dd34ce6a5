"""Several ``mailgate run`` processes on one PostgreSQL database share the accounts, as real
processes over folder mailboxes: an even spread, a hand-over when one joins or stops, who holds
what in ``mailgate status`` and ``/metrics``, and ``run --once`` leaving held accounts alone."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from service_desk import WAIT_LIMIT, ServiceDesk, account_yaml, build_service_desk

MAILGATE = Path(sys.executable).parent / "mailgate"
ACCOUNTS = ("box0", "box1", "box2", "box3")
SERVICE = "service:\n  lease_seconds: 2\n  heartbeat_seconds: 0.5\n"


def _desk(root: Path, database: str) -> ServiceDesk:
    accounts = ""
    for name in ACCOUNTS:
        (root / name).mkdir()
        accounts += account_yaml(name, f"{{type: folder, path: {name}}}", poll=1)
    desk = build_service_desk(root, accounts, database)
    desk.config_path.write_text(SERVICE + desk.config_path.read_text())
    return desk


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(desk: ServiceDesk, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [str(MAILGATE), "--config", str(desk.config_path), "-v", "run", "--http", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_LIMIT:g} s waiting for {what}")
        time.sleep(0.1)


def _holders(desk: ServiceDesk) -> dict[str, int | None]:
    """Each account's holding pid as ``mailgate status --json`` shows it."""
    answer = subprocess.run(
        [str(MAILGATE), "--config", str(desk.config_path), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {row["account"]: row["holder_pid"] for row in map(json.loads, answer.stdout.splitlines())}


def _leases_held(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return {
        sample.labels["account"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "mailgate_account_lease_held"
        for sample in family.samples
    }


def test_two_services_split_the_accounts_show_who_holds_what_and_hand_over_at_a_stop(
    tmp_path: Path, pg_url: str
) -> None:
    desk = _desk(tmp_path, pg_url)
    ports = (_free_port(), _free_port())
    first = _start(desk, ports[0], tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(
            lambda: set(_holders(desk).values()) == {first.pid}, "the first service to hold every account"
        )
        second = _start(desk, ports[1], tmp_path / "second.log")
        pids = (first.pid, second.pid)

        def split_evenly() -> bool:
            held = list(_holders(desk).values())
            return sorted(held.count(pid) for pid in pids) == [2, 2]

        _wait_for(split_evenly, "the accounts to be split two and two")
        table = subprocess.run(
            [str(MAILGATE), "--config", str(desk.config_path), "status"], capture_output=True, text=True
        ).stdout
        host = socket.gethostname()
        rows = table.splitlines()[2:]
        assert all(sum(f"  {host} (pid {pid}) since " in row for row in rows) == 2 for pid in pids), table
        gauges = [_leases_held(port) for port in ports]
        holders = _holders(desk)
        for account in ACCOUNTS:  # each account held by exactly one of the two, as /metrics says too
            assert [g[account] for g in gauges] == [1.0 if holders[account] == pid else 0.0 for pid in pids]

        once = subprocess.run(
            [str(MAILGATE), "--config", str(desk.config_path), "run", "--once"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert once.returncode == 0, once.stderr
        assert once.stdout.splitlines() == [
            f"{name}: skipped: a running service works it (see mailgate status)" for name in ACCOUNTS
        ]

        second.send_signal(signal.SIGTERM)  # a clean stop gives its leases back at once
        assert second.wait(timeout=60) == 0
        status = subprocess.run(
            [str(MAILGATE), "--config", str(desk.config_path), "status"], capture_output=True, text=True
        )
        assert status.stdout.startswith(f"SERVICE: running on {host} (pid {first.pid})"), status.stdout
        _wait_for(
            lambda: set(_holders(desk).values()) == {first.pid}, "the first service to take them all back"
        )
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    assert first.returncode == 0
    assert set(_holders(desk).values()) == {None}  # stopped: nobody holds anything

"""Account leases: an even spread over the live processes, takeover after expiry, fenced batches,
and one service per SQLite file (docs/scaling.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from service_desk import WAIT_LIMIT, account_yaml, build_service_desk
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.config.model import load_config
from engine.errors import ConfigError
from engine.service.leases import LeaseKeeper, assign
from engine.service.single import AlreadyRunning, only_service
from engine.storage.db import batch_transaction, open_database, transaction
from engine.storage.leases import AccountLease, LeaseLost, claim, lease_holders
from engine.storage.models import Person

MAILGATE = Path(sys.executable).parent / "mailgate"
ACCOUNTS = [f"box{n}" for n in range(8)]


def test_accounts_are_spread_evenly_and_a_joining_worker_moves_only_its_share() -> None:
    for workers in (["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d", "e"]):
        chosen = assign(ACCOUNTS, workers)
        loads = [list(chosen.values()).count(w) for w in workers]
        assert sorted(chosen) == sorted(ACCOUNTS)
        assert max(loads) - min(loads) <= 1 if len(ACCOUNTS) % len(workers) else max(loads) == min(loads)
    before, after = assign(ACCOUNTS, ["a", "b"]), assign(ACCOUNTS, ["a", "b", "c"])
    moved = [a for a in ACCOUNTS if before[a] != after[a]]
    assert all(after[a] == "c" for a in moved) and len(moved) <= 3
    assert assign(ACCOUNTS, ["b", "a"]) == before  # every process computes the same assignment


def _keeper(engine: Engine, lease_seconds: float = 3.0) -> LeaseKeeper:
    keeper = LeaseKeeper(engine, ACCOUNTS, lease_seconds, exclusive=False)
    keeper.start()
    return keeper


def _wait_expired(engine: Engine) -> None:
    """Until every lease of the table has run out (their holders stopped renewing)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while lease_holders(engine):
        assert time.monotonic() < deadline, "the leases never expired"
        time.sleep(0.05)


def test_two_workers_share_the_accounts_and_a_silent_ones_are_taken_after_they_expire(engine: Engine) -> None:
    first = _keeper(engine)
    assert sorted(first.tick().gained) == ACCOUNTS  # alone: every account
    second = _keeper(engine)
    assert second.tick().gained == {}  # assigned its share, but the first still holds it
    handed = first.tick().to_release  # the first sees the second and gives its share back...
    assert sorted(handed) == sorted(
        a for a, w in assign(ACCOUNTS, [first.worker.id, second.worker.id]).items() if w == second.worker.id
    )
    first.tick(stopped=handed)  # ... once those watchers have stopped
    assert sorted(second.tick().gained) == sorted(handed)
    assert {h.pid for h in lease_holders(engine).values()} == {os.getpid()}
    assert len(lease_holders(engine)) == len(ACCOUNTS)
    # the first goes silent (killed): once its leases expire the second takes them all
    deadline = time.monotonic() + WAIT_LIMIT
    while len(second.held) < len(ACCOUNTS):
        assert time.monotonic() < deadline, "the silent worker's accounts were never taken over"
        second.tick()
        time.sleep(0.05)
    assert first.tick().lost  # the first learns it lost them at its next tick


def test_a_batch_under_a_lost_lease_commits_nothing(engine: Engine) -> None:
    holder = _keeper(engine)
    token = holder.tick().gained["box0"]
    with batch_transaction(engine, holder.fence_for("box0", token)), transaction(engine) as session:
        session.add(Person(email="kept@example.com"))  # fenced and ours: committed
    _wait_expired(engine)  # the holder stalled past its lease...
    taker = _keeper(engine)
    assert "box0" in taker.claim_free()  # ... and another process took the account
    with (
        pytest.raises(LeaseLost, match="box0"),
        batch_transaction(engine, holder.fence_for("box0", token)),
        transaction(engine) as session,
    ):
        session.add(Person(email="lost@example.com"))
    with Session(engine) as session:
        emails = set(session.exec(select(Person.email)))
        lease = session.get(AccountLease, "box0")
    assert "kept@example.com" in emails and "lost@example.com" not in emails
    assert lease is not None and (lease.holder, lease.token) == (taker.worker.id, token + 1)


def test_a_clean_stop_gives_every_lease_back_at_once(engine: Engine) -> None:
    keeper = _keeper(engine, lease_seconds=30)
    keeper.tick()
    keeper.retire()
    assert lease_holders(engine) == {}
    assert sorted(_keeper(engine, lease_seconds=30).tick().gained) == ACCOUNTS


def test_lease_seconds_is_read_and_a_bad_one_reported_at_its_line(tmp_path: Path) -> None:
    accounts = account_yaml("helpdesk", "{type: folder, path: inbox}")
    config = tmp_path / "mailgate.yaml"
    config.write_text(f"database: sqlite:///x.sqlite\nservice:\n  lease_seconds: 5\naccounts:\n{accounts}")
    assert load_config(config).service.lease_seconds == 5.0
    config.write_text(f"database: sqlite:///x.sqlite\naccounts:\n{accounts}")
    assert load_config(config).service.lease_seconds == 30.0
    config.write_text(f"database: sqlite:///x.sqlite\nservice:\n  lease_seconds: 0.5\naccounts:\n{accounts}")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert [str(p) for p in caught.value.problems] == [f"{config}:3:18: lease_seconds must be at least 1"]


def test_a_second_service_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: folder, path: inbox}", poll=3600))
    (tmp_path / "inbox").mkdir()
    first = subprocess.Popen(
        [str(MAILGATE), "--config", str(desk.config_path), "-v", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / "mailgate.sqlite.run-lock"
        deadline = time.monotonic() + WAIT_LIMIT
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first service never started"
            time.sleep(0.05)
        for args in (["run"], ["run", "--once"]):
            second = subprocess.run(
                [str(MAILGATE), "--config", str(desk.config_path), *args],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 1, second.stderr
            assert (
                f"another mailgate run (pid {first.pid}) is already using the SQLite database"
                in second.stderr
            )
            assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 0
    with only_service(desk.runtime.engine) as locked:  # the lock went with its process
        assert locked
        with pytest.raises(AlreadyRunning), only_service(desk.runtime.engine):
            pass


def test_a_takeover_waits_for_the_holders_batch_in_hand_and_renewals_do_not(pg_url: str) -> None:
    engine = open_database(pg_url)
    try:
        holder = _keeper(engine)
        token = holder.tick().gained["box0"]
        taken: list[int | None] = []
        with batch_transaction(engine, holder.fence_for("box0", token)), transaction(engine) as session:
            session.add(Person(email="in-hand@example.com"))
            holder.tick()  # its own renewal is not held up by its batch
            _wait_expired_but(engine, "box0")  # the holder stalls in its batch past its lease...
            taker = _keeper(engine)
            claiming = threading.Thread(target=lambda: taken.append(claim(engine, taker.worker, "box0", 3.0)))
            claiming.start()
            deadline = time.monotonic() + WAIT_LIMIT
            while not _waiting_for_a_lock(engine):  # ... and the takeover waits for the batch
                assert time.monotonic() < deadline and claiming.is_alive(), taken
                time.sleep(0.05)
        claiming.join(timeout=WAIT_LIMIT)
        assert taken == [token + 1]  # taken once the batch, fenced in time, was committed
        with Session(engine) as session:
            assert session.exec(select(Person).where(Person.email == "in-hand@example.com")).first()
    finally:
        engine.dispose()


def _wait_expired_but(engine: Engine, account: str) -> None:
    """Until ``account``'s lease has run out (read on another connection)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while account in lease_holders(engine):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)


def _waiting_for_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return bool(waiting)

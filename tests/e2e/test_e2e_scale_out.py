"""Scale-out under fire: three ``mailgate run`` processes on one PostgreSQL database share eight
IMAP accounts of the session's Dovecot while 2,000 messages arrive, and one of them is SIGKILLed
at random moments, again and again (also by the test-only hooks: right after a batch's commit
before its acknowledgement, and in the middle of a batch). Every reply goes out through a real
SMTP server on loopback, which counts them.

What must hold: every message processed exactly once (one ledger entry and one new call each),
no reply sent twice except a message whose sender was killed during SMTP (its outbox row shows a
second attempt: the documented at-least-once case, docs/outgoing.md), and every account of a
killed process taken over within ``service.lease_seconds`` of its last sign of life (measured on
the database's clock).
"""

from __future__ import annotations

import imaplib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from e2e_desk import (
    MAILGATE,
    Desk,
    Mailbox,
    MakeDesk,
    account_yaml,
    alive,
    connector_yaml,
    events,
    mail,
    running,
    wait_for,
)
from outgoing.smtp_test_server import RecordingHandler, SmtpServer
from servers.dovecot import Dovecot
from sqlalchemy import text

from engine.service.runner import TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV
from engine.storage.leases import lease_holders

ACCOUNTS = 8
MESSAGES = 2000
WORKERS = 3
LEASE_SECONDS = 5.0
KILLS = 4  # by the test, at random moments; the hooks add two more
DONE_LIMIT = 300.0  # seconds for the whole run: a bound, not a measure


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on a free loopback port, recording every message that arrives."""
    server = SmtpServer(RecordingHandler(), 0)
    yield server
    server.stop()


def _mailboxes(dovecot: Dovecot) -> list[Mailbox]:
    boxes = []
    for number in range(ACCOUNTS):
        user = f"scale{number}x{random.randrange(10**9)}"
        dovecot.add_user(user, "scale-secret")
        boxes.append(Mailbox(dovecot, user, "scale-secret"))
    return boxes


def _desk(make_desk: MakeDesk, boxes: list[Mailbox], server: SmtpServer, database: str) -> Desk:
    accounts = "".join(
        account_yaml(f"box{n}", connector_yaml(box, "imap"), poll=1) for n, box in enumerate(boxes)
    )
    extra = (
        f"service:\n  lease_seconds: {LEASE_SECONDS:g}\n  heartbeat_seconds: 1\n"
        "outgoing:\n"
        "  servers:\n"
        f"    - {{name: main, host: {server.host}, port: {server.port}, security: plain, timeout: 10}}\n"
        "  retry_delay_seconds: 0\n"
        "  sending_timeout_seconds: 2\n"  # a reply left `sending` by a kill goes out again soon
        "  replies_per_sender_per_hour: 100000\n"
    )
    return make_desk(accounts, database=database, extra=extra)


def _feed(boxes: list[Mailbox], dovecot: Dovecot, failures: list[BaseException]) -> None:
    """APPEND the messages round-robin over the mailboxes, one IMAP session each."""
    try:
        sessions = []
        for box in boxes:
            client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=60)
            client.login(box.user, box.password)
            sessions.append(client)
        for number in range(MESSAGES):
            raw = mail(f"Printer {number} jams", message_id=f"scale{number}@mail.example")
            status, data = sessions[number % ACCOUNTS].append("INBOX", None, None, raw)
            assert status == "OK", data
        for client in sessions:
            client.logout()
    except BaseException as exc:  # the main thread reports it
        failures.append(exc)


class Workers:
    """The running ``mailgate run`` processes, their logs, and the takeovers measured."""

    def __init__(self, desk: Desk, root: Path) -> None:
        self.desk, self.root = desk, root
        self.running: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.takeovers: list[float] = []  # seconds from a victim's last beat to its accounts' new holders

    def start(self, hook: dict[str, str] | None = None) -> None:
        """One more worker (``hook``: a test-only signal hook in its environment)."""
        self.started += 1
        log = self.root / f"worker{self.started}.log"
        with log.open("wb") as sink:
            self.running.append(
                subprocess.Popen(
                    [str(MAILGATE), "--config", str(self.desk.config_path), "-v", "run"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                    env={**_env(), **(hook or {})},
                )
            )

    def reap(self, victim: subprocess.Popen[bytes], held: list[str]) -> None:
        """After ``victim`` died: wait for every account it held to be taken, record how long it took."""
        victim.wait(timeout=60)
        self.running.remove(victim)
        engine = self.desk.runtime.engine
        with engine.connect() as connection:
            beat = connection.execute(
                text("SELECT max(beat_at) FROM serviceworker WHERE pid = :pid"), {"pid": victim.pid}
            ).scalar()
        deadline, second_failure = time.monotonic() + 60, False
        while True:
            for process in [p for p in self.running if p.poll() is not None]:
                # a hook killed another meanwhile (both survivors may carry one): start a successor,
                # else nobody may be left to take the accounts over
                self.running.remove(process)
                self.start()
                second_failure = True
            live = {p.pid for p in self.running if p.poll() is None}
            holders = lease_holders(engine)
            if all(a in holders and holders[a].pid in live for a in held):
                break
            assert time.monotonic() < deadline, f"accounts {held} of pid {victim.pid} never taken over"
            time.sleep(0.05)
        # two failures in a row (the successor died too) take two lease times: not one takeover
        if held and isinstance(beat, datetime) and not second_failure:
            since = [_utc(holders[a].since) for a in held]
            self.takeovers.append((max(since) - _utc(beat)).total_seconds())

    def held_by(self, pid: int) -> list[str]:
        """The accounts whose unexpired lease names ``pid``."""
        return [a for a, h in lease_holders(self.desk.runtime.engine).items() if h.pid == pid]

    def holding(self) -> list[subprocess.Popen[bytes]]:
        """The running workers that hold at least one account."""
        pids = {h.pid for h in lease_holders(self.desk.runtime.engine).values()}
        return [p for p in self.running if p.pid in pids and p.poll() is None]

    def stop(self) -> None:
        """SIGTERM every worker still running, and wait for them."""
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            process.wait(timeout=60)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _env() -> dict[str, str]:
    hooks = (TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV, "MAILGATE_CONFIG")
    return {k: v for k, v in os.environ.items() if k not in hooks}


def test_three_workers_with_one_killed_again_and_again_process_every_message_once_and_send_no_reply_twice(
    make_desk: MakeDesk, dovecot: Dovecot, smtp_server: SmtpServer, pg_url: str, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    print(f"seed {seed}")  # shown with any failure: random.Random(seed) replays the kills' choices
    chance = random.Random(seed)
    boxes = _mailboxes(dovecot)
    desk = _desk(make_desk, boxes, smtp_server, pg_url)
    workers = Workers(desk, tmp_path)
    for _ in range(WORKERS):
        workers.start()
    feed_failures: list[BaseException] = []
    feeder = threading.Thread(target=_feed, args=(boxes, dovecot, feed_failures), daemon=True)
    feeder.start()
    hooks = [
        {TEST_SIGNAL_AFTER_COMMIT_ENV: f"{chance.randint(1, 60)}:SIGKILL"},
        {TEST_SIGNAL_AFTER_MESSAGE_ENV: f"{chance.randint(1, 60)}:SIGKILL"},
    ]
    kills, deadline = 0, time.monotonic() + DONE_LIMIT
    try:
        next_kill = time.monotonic() + chance.uniform(1.0, 3.0)
        while not _all_done(desk):
            assert time.monotonic() < deadline, f"not done in {DONE_LIMIT:g} s (seed {seed})"
            for process in list(workers.running):  # a hook killed it
                # (unless the reap of another, waiting, found it dead first and replaced it)
                if process in workers.running and process.poll() is not None:
                    workers.reap(process, workers.held_by(process.pid))
                    workers.start()
            holding = workers.holding()
            if kills < KILLS and time.monotonic() >= next_kill and holding:
                victim = chance.choice(holding)  # a worker that holds accounts, at a random moment
                held = workers.held_by(victim.pid)
                victim.send_signal(signal.SIGKILL)
                kills += 1
                workers.reap(victim, held)
                workers.start(hooks.pop() if hooks else None)
                next_kill = time.monotonic() + chance.uniform(0.5, 3.0)
            time.sleep(0.1)
    finally:
        workers.stop()
        feeder.join(timeout=60)
    assert not feed_failures, feed_failures

    ledger = desk.ledger()
    keys = Counter(entry["message_id"] for entry in ledger)
    assert len(keys) == MESSAGES and set(keys.values()) == {1}, f"seed {seed}"  # each message once
    assert {entry["outcome"] for entry in ledger} == {"logged"}
    assert len(desk.new_calls()) == MESSAGES
    arrived = Counter(a.message["Message-ID"] for a in smtp_server.handler.arrived)
    outbox = desk.outbox()
    assert {f"<{row['message_id']}>" for row in outbox} == set(arrived), "every reply arrived"
    attempts = {f"<{row['message_id']}>": row["attempts"] for row in outbox}
    twice = [mid for mid, count in arrived.items() if count > 1]
    assert all(attempts[mid] > 1 for mid in twice), f"sent twice without a crash during SMTP (seed {seed})"
    assert kills == KILLS and len(workers.takeovers) >= KILLS - 2
    print(f"\nseed {seed}: takeovers {[round(t, 2) for t in workers.takeovers]} s, {len(twice)} sent twice")
    assert max(workers.takeovers) <= LEASE_SECONDS, workers.takeovers


def _all_done(desk: Desk) -> bool:
    """Every message in the ledger, every mailbox empty, every reply sent."""
    with desk.runtime.engine.connect() as connection:
        ledger = connection.execute(text("SELECT count(*) FROM ledgerentry")).scalar()
        waiting = connection.execute(
            text("SELECT count(*) FROM outboxmessage WHERE status <> 'sent'")
        ).scalar()
    return ledger == MESSAGES and waiting == 0


def test_an_idle_watcher_whose_lease_is_taken_stops_cleanly_and_idles_again_once_it_is_back(
    make_desk: MakeDesk, mailbox: Mailbox, pg_url: str, tmp_path: Path
) -> None:
    extra = "service:\n  lease_seconds: 2\n"
    desk = make_desk(
        account_yaml("helpdesk", connector_yaml(mailbox, "imap"), poll=60), database=pg_url, extra=extra
    )
    log = tmp_path / "run.log"
    with running(desk, log) as service:
        mailbox.append(mail("Printer 1 jams", message_id="idle1@mail.example"))
        wait_for(lambda: len(events(log.read_text(), "processed")) == 1, "the first mail, under the lease")
        with desk.runtime.engine.begin() as connection:  # another process takes the lease for 3 s
            connection.execute(
                text(
                    "UPDATE accountlease SET holder = 'intruder', token = token + 1, "
                    "expires_at = now() + interval '3 seconds' WHERE account = 'helpdesk'"
                )
            )
        wait_for(lambda: events(log.read_text(), "lease_lost"), "the service to see its lease taken")
        wait_for(
            lambda: len(events(log.read_text(), "lease_acquired")) == 2, "the lease back once it ran out"
        )
        mailbox.append(mail("Printer 2 jams", message_id="idle2@mail.example"))  # IDLE wakes the new watcher
        wait_for(lambda: len(events(log.read_text(), "processed")) == 2, "the second mail")
        alive(service, log)
    text_log = log.read_text()
    assert service.returncode == 0, text_log
    assert [e["token"] for e in events(text_log, "lease_acquired")] == ["1", "3"]
    # the watcher was stopped when the lease went, not by a batch's fence after it went on idling
    assert [sorted(e) for e in events(text_log, "lease_lost")] == [["account", "event"]], text_log
    assert "Traceback" not in text_log and " ERROR " not in text_log, text_log
    assert not events(text_log, "close_failed") and not events(text_log, "poll_failed"), text_log
    assert [e["message_id"] for e in desk.ledger()] == ["idle1@mail.example", "idle2@mail.example"]

"""This process's share of the accounts: which to work, renewing their leases, giving them back.

Every live process computes the same assignment from the same list of live workers
(``assign``: rendezvous hashing, capped at ceil(accounts / workers) each, so the accounts are
spread evenly and a joining or leaving process moves only a few). Every ``tick`` (a fifth of
``service.lease_seconds``) a process beats, renews what it holds for 0.6 ``lease_seconds``,
claims the free or expired accounts assigned to it, and gives back those assigned to another
once their watchers have stopped. A killed process stops beating and
renewing: within 0.6 ``lease_seconds`` its leases expire and it drops out of the live list,
and the others, who tick again at the moment its last beat runs out (or sooner), claim its
accounts then, so every account is taken over within 0.6 ``lease_seconds`` plus a busy
machine's delays, well within ``lease_seconds``. A holder may miss two
renewals in a row before it loses a lease. (The storage side: ``engine.storage.leases``.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from engine.service.events import log_event
from engine.storage.leases import (
    Worker,
    beat_and_renew,
    claim,
    fence,
    register_worker,
    release,
    retire_worker,
    seconds_to_expiry,
)

TERM_SHARE = 0.6  # a lease runs for this share of lease_seconds after each renewal
TICK_SHARE = 0.2  # and is renewed (and the accounts looked over) this often
FORGET_WORKERS_AFTER = 3600.0  # seconds after which a dead worker's row is deleted
DEATH_MARGIN = 0.05  # seconds after another worker's last beat runs out before looking again


def _score(account: str, worker: str) -> int:
    digest = hashlib.sha256(f"{account}\0{worker}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def assign(accounts: Sequence[str], workers: Sequence[str]) -> dict[str, str]:
    """Each account's worker: its highest rendezvous score among those under ceil(accounts/workers)."""
    if not workers:
        return {}
    cap = -(-len(accounts) // len(workers))
    load: Counter[str] = Counter()
    chosen: dict[str, str] = {}
    for account in sorted(accounts):
        for worker in sorted(workers, key=lambda w: _score(account, w), reverse=True):
            if load[worker] < cap:
                chosen[account] = worker
                load[worker] += 1
                break
    return chosen


def this_worker() -> Worker:
    """This process, under a new random id."""
    return Worker(uuid.uuid4().hex, socket.gethostname(), os.getpid())


@dataclass
class Changes:
    """What one tick decided: accounts gained (with their tokens), lost, and to give back."""

    gained: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    to_release: list[str] = field(default_factory=list)
    next_tick: float = 0.0  # seconds until the next tick should run


class LeaseKeeper:
    """Holds this process's leases; every method is blocking (run it in a thread) and not reentrant.

    ``exclusive``: no other process can use this database (SQLite, under its file lock), so the
    leases of an earlier, killed process are taken at once instead of after they expire.
    """

    def __init__(
        self, engine: Engine, accounts: Sequence[str], lease_seconds: float, *, exclusive: bool
    ) -> None:
        self.engine = engine
        self.accounts = list(accounts)
        self.term = lease_seconds * TERM_SHARE
        self.tick_seconds = lease_seconds * TICK_SHARE
        self.exclusive = exclusive
        self.worker = this_worker()
        self.held: dict[str, int] = {}  # account -> fencing token
        self.releasing: set[str] = set()  # held, assigned elsewhere, their watchers stopping

    def start(self) -> None:
        """Register this process (and a lease row for every account)."""
        register_worker(self.engine, self.worker, self.accounts)

    def tick(self, stopped: Sequence[str] = ()) -> Changes:
        """Give back ``stopped`` accounts (their watchers are done), beat, renew, claim what is ours."""
        done = {a: self.held.pop(a) for a in stopped if a in self.held}
        self.releasing -= set(stopped)
        release(self.engine, self.worker, done)
        beat = beat_and_renew(self.engine, self.worker, self.term)
        renewed, live = beat.held, beat.live
        changes = Changes(next_tick=self.tick_seconds)
        if beat.next_death is not None and not self.exclusive:  # look again the moment it could die
            changes.next_tick = min(self.tick_seconds, beat.next_death + DEATH_MARGIN)
        for account, token in list(self.held.items()):
            if renewed.get(account) != token:
                del self.held[account]
                self.releasing.discard(account)
                changes.lost.append(account)
        workers = [self.worker.id] if self.exclusive else live
        mine = {a for a, w in assign(self.accounts, workers).items() if w == self.worker.id}
        for account in sorted(set(self.held) - mine - self.releasing):
            self.releasing.add(account)
            changes.to_release.append(account)
        waiting = []  # assigned here, still held by another: look again when the first runs out
        for account in sorted(mine - set(self.held)):
            taken = claim(self.engine, self.worker, account, self.term, force=self.exclusive)
            if taken is None:
                waiting.append(account)
            else:
                self.held[account] = taken
                changes.gained[account] = taken
        expiry = seconds_to_expiry(self.engine, waiting) if waiting else None
        if expiry is not None:
            changes.next_tick = min(changes.next_tick, expiry + DEATH_MARGIN)
        return changes

    def renew(self) -> None:
        """Beat and renew the leases held, claiming nothing (``mailgate run --once``'s passes)."""
        beat_and_renew(self.engine, self.worker, self.term)

    @contextmanager
    def renewing(self) -> Iterator[None]:
        """Renew the leases held every ``tick_seconds``, in a thread of its own, while the block runs.

        For ``mailgate run --once``: a pass over a long backlog outlasts a lease's term, and a
        batch holding the event loop must not delay its renewal.
        """
        halt = threading.Event()

        def renew_until_halted() -> None:
            while not halt.wait(self.tick_seconds):
                try:
                    self.renew()
                except Exception as exc:  # the database is away: the fence stops what is not ours
                    log_event(logging.WARNING, "lease_renewal_failed", error=str(exc))

        renewer = threading.Thread(target=renew_until_halted, name="lease renewals", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            halt.set()
            renewer.join()

    def claim_free(self) -> dict[str, int]:
        """Claim every free account at once, whatever the assignment (``mailgate run --once``)."""
        for account in self.accounts:
            taken = claim(self.engine, self.worker, account, self.term, force=self.exclusive)
            if taken is not None:
                self.held[account] = taken
        return dict(self.held)

    def fence_for(self, account: str, token: int) -> Callable[[Connection], None]:
        """The check a batch of ``account`` runs first in its transaction (``LeaseLost`` if not ours)."""
        worker = self.worker

        def check(connection: Connection) -> None:
            fence(connection, worker, account, token)

        return check

    def retire(self) -> None:
        """Give back every lease and remove this process's worker row (a clean stop)."""
        held, self.held = self.held, {}
        self.releasing.clear()
        release(self.engine, self.worker, held)
        retire_worker(self.engine, self.worker, FORGET_WORKERS_AFTER)

"""The watchers of the accounts this process holds: started as leases are won, stopped as they go.

``WatcherPool.run`` is the service's lease task: every tick of its ``LeaseKeeper``
(``engine.service.leases``) it starts an ``AccountWatcher`` for each account gained, and stops the
watcher of each account lost or assigned to another process (finishing the message in hand;
an IDLE wait is cut short). A lease given back is released in the database only once its
watcher has ended, so two processes never work one account at once. Each batch of a watcher is
fenced (``LeaseKeeper.fence_for``): after a lost lease nothing more of that account commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.engine import Connection

from engine.service.events import log_event
from engine.service.leases import Changes, LeaseKeeper
from engine.service.watcher import AccountWatcher, describe_error

Fence = Callable[[Connection], None]
WatcherFactory = Callable[[str, asyncio.Event, Fence], AccountWatcher]


class AccountStop(asyncio.Event):
    """One watcher's stop: set when its lease goes, and whenever the service stops."""

    def __init__(self, service_stop: asyncio.Event) -> None:
        super().__init__()
        self.service_stop = service_stop

    def is_set(self) -> bool:
        """True once this watcher or the whole service should stop."""
        return super().is_set() or self.service_stop.is_set()


class WatcherPool:
    """Runs a watcher for every account whose lease this process holds (see the module)."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        make_watcher: WatcherFactory,
        service_stop: asyncio.Event,
        track: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self.keeper = keeper
        self.make_watcher = make_watcher
        self.service_stop = service_stop
        self.track = track  # the service cancels tracked tasks on a second signal
        self.running: dict[str, tuple[AccountWatcher, AccountStop, asyncio.Task[None]]] = {}
        self._ended = asyncio.Event()

    def stop_all(self) -> None:
        """Wake every watcher's wait: the service is stopping."""
        for _, stop, _ in self.running.values():
            stop.set()
        self._ended.set()

    async def run(self) -> None:
        """Keep the leases and the watchers in step until the service stops; then give every lease back."""
        while not await self._registered():
            await self._wait(self.keeper.tick_seconds)
            if self.service_stop.is_set():
                return
        ended: list[str] = []
        try:
            while not self.service_stop.is_set():
                try:
                    changes = await asyncio.to_thread(self.keeper.tick, ended)
                    ended = []
                except Exception as exc:  # the database is away: the fences keep the watchers honest
                    error = describe_error(getattr(exc, "orig", None) or exc)
                    log_event(logging.WARNING, "lease_renewal_failed", error=error)
                    changes = Changes()
                self._apply(changes)
                await self._wait(self.keeper.tick_seconds)
                ended += self._collect_ended()
        finally:
            await self._stop_every_watcher()
            try:
                await asyncio.to_thread(self.keeper.retire)
            except Exception as exc:  # they expire on their own within lease_seconds
                log_event(logging.WARNING, "leases_not_released", error=describe_error(exc))

    async def _registered(self) -> bool:
        """Register this process with the lease tables; False (logged) if the database is away."""
        try:
            await asyncio.to_thread(self.keeper.start)
        except Exception as exc:
            log_event(
                logging.WARNING,
                "lease_renewal_failed",
                error=describe_error(getattr(exc, "orig", None) or exc),
            )
            return False
        return True

    def _apply(self, changes: Changes) -> None:
        for account in changes.lost:
            log_event(logging.WARNING, "lease_lost", account=account)
            self._stop(account)
        for account in changes.to_release:
            log_event(logging.INFO, "lease_handed_over", account=account)
            self._stop(account)
        for account, token in changes.gained.items():
            log_event(logging.INFO, "lease_acquired", account=account, token=token)
            self._start(account, token)

    def _start(self, account: str, token: int) -> None:
        if account in self.running:  # its old watcher still stops: wait for it (next tick)
            return
        stop = AccountStop(self.service_stop)
        watcher = self.make_watcher(account, stop, self.keeper.fence_for(account, token))
        watcher.stats.lease(True)
        task = asyncio.create_task(watcher.watch(), name=f"watch {account}")
        task.add_done_callback(lambda _task: self._ended.set())
        self.track(task)
        self.running[account] = (watcher, stop, task)

    def _stop(self, account: str) -> None:
        entry = self.running.get(account)
        if entry is not None:
            entry[1].set()

    def _collect_ended(self) -> list[str]:
        """The accounts whose watchers ended (asked to, or their lease was lost), forgotten here."""
        ended = [account for account, (_, _, task) in self.running.items() if task.done()]
        for account in ended:
            watcher, _, task = self.running.pop(account)
            watcher.stats.lease(False)
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                log_event(logging.ERROR, "task_failed", task=task.get_name(), error=describe_error(failure))
        return ended

    async def _wait(self, seconds: float) -> None:
        """Until the next tick, a watcher's end, or the service's stop."""
        self._ended.clear()
        if any(task.done() for _, _, task in self.running.values()) or self.service_stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), seconds)

    async def _stop_every_watcher(self) -> None:
        for _, stop, _ in self.running.values():
            stop.set()
        tasks = [task for _, _, task in self.running.values()]
        if tasks:
            await asyncio.wait(tasks)
        self._collect_ended()

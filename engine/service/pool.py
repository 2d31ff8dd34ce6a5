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
import logging
import queue
import threading
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
        self._ended: queue.SimpleQueue[str] = queue.SimpleQueue()  # watchers ended, for the lease thread
        self._wake = threading.Event()  # tick now (a watcher ended, or the service stops)
        self._halt = threading.Event()

    def stop_all(self) -> None:
        """Wake every watcher's wait: the service is stopping."""
        for _, stop, _ in self.running.values():
            stop.set()

    async def run(self) -> None:
        """Keep the leases and the watchers in step until the service stops; then give every lease back.

        The ticks run in a thread of their own, so that a batch holding the event loop never
        delays a renewal or a takeover; what a tick decided is applied on the loop.
        """
        loop = asyncio.get_running_loop()
        ticker = threading.Thread(target=self._tick_until_halted, args=(loop,), name="leases", daemon=True)
        ticker.start()
        try:
            await self.service_stop.wait()
        finally:
            self._halt.set()
            self._wake.set()
            await asyncio.to_thread(ticker.join)
            await self._stop_every_watcher()
            try:
                await asyncio.to_thread(self.keeper.retire)
            except Exception as exc:  # they expire on their own within lease_seconds
                log_event(logging.WARNING, "leases_not_released", error=_reason(exc))

    def _tick_until_halted(self, loop: asyncio.AbstractEventLoop) -> None:
        """The lease thread: register, then tick every ``tick_seconds`` (sooner when a watcher ends)."""
        registered = False
        while not self._halt.is_set():
            ended: list[str] = []
            while not self._ended.empty():
                ended.append(self._ended.get())
            try:
                if not registered:
                    self.keeper.start()
                    registered = True
                changes = self.keeper.tick(ended)
            except Exception as exc:  # the database is away: the fences keep the watchers honest
                log_event(logging.WARNING, "lease_renewal_failed", error=_reason(exc))
                wait = self.keeper.tick_seconds
            else:
                if changes.gained or changes.lost or changes.to_release:
                    loop.call_soon_threadsafe(self._apply, changes)
                wait = changes.next_tick
            self._wake.wait(wait)
            self._wake.clear()

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
        task.add_done_callback(lambda done: self._watcher_ended(account, done))
        self.track(task)
        self.running[account] = (watcher, stop, task)

    def _stop(self, account: str) -> None:
        entry = self.running.get(account)
        if entry is not None:
            entry[1].set()

    def _watcher_ended(self, account: str, task: asyncio.Task[None]) -> None:
        """A watcher ended (asked to, or its lease was lost): forget it, and tell the lease thread."""
        entry = self.running.get(account)
        if entry is not None and entry[2] is task:
            del self.running[account]
            entry[0].stats.lease(False)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            log_event(logging.ERROR, "task_failed", task=task.get_name(), error=describe_error(failure))
        self._ended.put(account)
        self._wake.set()

    async def _stop_every_watcher(self) -> None:
        for _, stop, _ in self.running.values():
            stop.set()
        tasks = [task for _, _, task in self.running.values()]
        if tasks:
            await asyncio.wait(tasks)


def _reason(exc: BaseException) -> str:
    """A database failure in the driver's words, without SQLAlchemy's link."""
    return describe_error(getattr(exc, "orig", None) or exc)

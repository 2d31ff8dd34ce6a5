"""The polling service behind ``mailgate run``: every active account watched concurrently.

- ``runner``: ``Service`` and ``serve`` (signals, the outbox hook, ``--once``);
- ``watcher``: ``AccountWatcher``, one account's connect / process / acknowledge / wait loop;
- ``backoff`` and ``options``: retry delays and the service's tunables;
- ``events``: the structured ``event=... key=value`` log lines.
"""

from __future__ import annotations

from engine.service.backoff import Backoff
from engine.service.options import ServiceOptions
from engine.service.runner import Service, find_outbox_drainer, serve
from engine.service.watcher import AccountWatcher, PassReport

__all__ = [
    "AccountWatcher",
    "Backoff",
    "PassReport",
    "Service",
    "ServiceOptions",
    "find_outbox_drainer",
    "serve",
]

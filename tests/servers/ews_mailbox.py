"""The in-memory mailbox behind the loopback EWS server: folders (Exchange's well-known ones) and items.

It also sends: ``sent`` holds every message handed to Exchange for delivery (CreateItem with a send
disposition), byte for byte; ``max_send_size``, ``send_as`` and ``unknown_recipients`` are the limits
Exchange applies.
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_ids = itertools.count(1)


def _new_id(kind: bytes) -> str:
    """An opaque base64 id like Exchange's (it contains '+', '/' and '=' often enough)."""
    return base64.b64encode(
        b"\x00\x00\x00\x00" + kind + next(_ids).to_bytes(4, "big") + os.urandom(30)
    ).decode()


@dataclass
class EwsFolder:
    """A mail folder; ``distinguished`` is its well-known id (inbox, deleteditems, ...) if any."""

    name: str
    parent: str | None
    distinguished: str | None = None
    id: str = field(default_factory=lambda: _new_id(b"F"))
    changekey: str = field(default_factory=lambda: base64.b64encode(os.urandom(12)).decode())


@dataclass
class EwsItem:
    """A message in a folder."""

    mime: bytes
    received: datetime
    folder: str
    id: str = field(default_factory=lambda: _new_id(b"I"))
    changekey: str = field(default_factory=lambda: base64.b64encode(os.urandom(12)).decode())


class EwsMailbox:
    """The mailbox the server serves; tests deliver into it and look at what is left."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.lock = threading.Lock()
        self.folders: dict[str, EwsFolder] = {}
        self.items: dict[str, EwsItem] = {}
        self.sent: list[bytes] = []  # what Exchange accepted for delivery, in order
        self.max_send_size = 10 * 1024 * 1024  # Exchange's default MaxSendSize (10 MB)
        self.send_as: set[str] = set()  # addresses besides ``email`` its From may carry (Send As rights)
        self.unknown_recipients: set[str] = set()  # addresses it cannot resolve: a send to one is refused
        self._clock = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        root = self._add(EwsFolder("", None, "root"))
        top = self._add(EwsFolder("Top of Information Store", root.id, "msgfolderroot"))
        self._add(EwsFolder("Inbox", top.id, "inbox"))
        self._add(EwsFolder("Deleted Items", top.id, "deleteditems"))
        self._add(EwsFolder("Sent Items", top.id, "sentitems"))
        self._add(EwsFolder("Recoverable Items", root.id, "recoverableitemsroot"))

    def _add(self, folder: EwsFolder) -> EwsFolder:
        self.folders[folder.id] = folder
        return folder

    def folder(self, path: str) -> EwsFolder:
        """The folder at ``path`` from the top of the mailbox (``Inbox/helpdesk``), created if missing."""
        with self.lock:
            current = self.distinguished("msgfolderroot")
            for part in (p for p in path.split("/") if p):
                found = [f for f in self.children(current.id) if f.name.lower() == part.lower()]
                current = found[0] if found else self._add(EwsFolder(part, current.id))
            return current

    def distinguished(self, name: str) -> EwsFolder:
        """The folder with that well-known id."""
        return next(f for f in self.folders.values() if f.distinguished == name)

    def children(self, folder_id: str) -> list[EwsFolder]:
        """The direct subfolders."""
        return [f for f in self.folders.values() if f.parent == folder_id]

    def deliver(self, raw: bytes, path: str = "Inbox") -> str:
        """Put a message in a folder (each one received a minute after the previous); returns its id."""
        target = self.folder(path)
        with self.lock:
            self._clock += timedelta(minutes=1)
            item = EwsItem(raw, self._clock, target.id)
            self.items[item.id] = item
            return item.id

    def store(self, raw: bytes, folder_id: str) -> EwsItem:
        """Put a message in a folder, received a minute after the previous one (call with the lock held)."""
        self._clock += timedelta(minutes=1)
        item = EwsItem(raw, self._clock, folder_id)
        self.items[item.id] = item
        return item

    def messages(self, path: str = "Inbox") -> list[bytes]:
        """The messages in a folder, oldest first."""
        target = self.folder(path)
        with self.lock:
            return [
                i.mime for i in sorted(self.items.values(), key=lambda i: i.received) if i.folder == target.id
            ]

    def in_folder(self, folder_id: str) -> list[EwsItem]:
        """The items of a folder, oldest first (call with the lock held)."""
        return sorted((i for i in self.items.values() if i.folder == folder_id), key=lambda i: i.received)

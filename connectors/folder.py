"""The folder connector: a maildir, or a plain directory of .eml files, on the local disk.

It is the embedded default (``connector: folder`` reads ``mailbox/`` beside the config), what an
MTA delivers into, and the worked example of docs/connectors.md.

- A folder with ``cur/``, ``new/`` and ``tmp/`` is a maildir: messages are the files of ``new/`` and
  ``cur/``; ``tmp/`` holds messages still being written and is never read or touched.
- Any other folder is a plain directory: messages are the ``*.eml`` files directly inside it. A
  writer must write under another name (``.tmp``, or a name starting with a dot) and rename.
- Messages are listed oldest first: by delivery time (the file's modification time, which a
  rename keeps), then by name. A message's id is its file name relative to the folder
  (``new/1700000000.M1P2.host`` or ``ticket-17.eml``).
- Acknowledging deletes the file, or moves it into ``processed_folder`` (created if missing; its
  ``cur/`` if it is a maildir). Relative paths are taken against the config's folder.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from connectors.base import Connector, ConnectorError, ConnectorSettings, MessageRef

MAILDIR_SUBFOLDERS = ("cur", "new", "tmp")
DEFAULT_FOLDER = "mailbox"


@dataclass(frozen=True)
class FolderSettings(ConnectorSettings):
    """``connector: {type: folder, path: mailbox, processed_folder: done}``.

    ``path`` defaults to ``mailbox`` (beside the config), so ``connector: folder`` needs nothing else.
    Without ``processed_folder`` an acknowledged message is deleted.
    """

    path: str = DEFAULT_FOLDER
    processed_folder: str | None = None

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path must name a folder")
        if self.processed_folder is not None:
            if not self.processed_folder.strip():
                raise ValueError("processed_folder must name a folder (leave it out to delete messages)")
            if os.path.normpath(self.processed_folder) == os.path.normpath(self.path):
                raise ValueError("processed_folder must be another folder than path")


def is_maildir(folder: Path) -> bool:
    """Whether a folder is a maildir: it has cur/, new/ and tmp/ subfolders."""
    return all((folder / name).is_dir() for name in MAILDIR_SUBFOLDERS)


class FolderConnector(Connector):
    """Reads a maildir or a directory of .eml files; see the module docstring."""

    name = "folder"
    Settings = FolderSettings

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        if not isinstance(settings, FolderSettings):
            raise ConnectorError(f"account {account}: folder connector given {type(settings).__name__}")
        self.folder = base_dir / Path(settings.path).expanduser()
        processed = settings.processed_folder
        self.processed = base_dir / Path(processed).expanduser() if processed is not None else None
        self.maildir = False

    async def connect(self) -> None:
        """Check that the folder exists and see whether it is a maildir."""
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        if not self.folder.is_dir():
            what = "is not a folder" if self.folder.exists() else "does not exist"
            raise ConnectorError(f"mailbox folder {self.folder} {what} (create it, or set connector.path)")
        self.maildir = is_maildir(self.folder)
        if self.processed is not None and self._is_listed_folder(self.processed):
            raise ConnectorError(
                f"processed_folder {self.processed} is where waiting mail is read from; choose another folder"
            )

    def _is_listed_folder(self, folder: Path) -> bool:
        listed = [self.folder / "new", self.folder / "cur"] if self.maildir else [self.folder]
        return any(os.path.realpath(folder) == os.path.realpath(place) for place in listed)

    async def list_waiting(self) -> list[MessageRef]:
        """The messages in new/ and cur/ (maildir) or the *.eml files, oldest first."""
        return await asyncio.to_thread(self._list_waiting)

    def _list_waiting(self) -> list[MessageRef]:
        found: list[tuple[int, str, int]] = []
        places = (
            [("new", self.folder / "new"), ("cur", self.folder / "cur")]
            if self.maildir
            else [("", self.folder)]
        )
        for prefix, place in places:
            try:
                entries = list(os.scandir(place))
            except OSError as exc:
                raise ConnectorError(f"{place}: cannot list the folder ({exc.strerror or exc})") from None
            for entry in entries:
                if entry.name.startswith(".") or not (self.maildir or entry.name.lower().endswith(".eml")):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    info = entry.stat()
                except FileNotFoundError:  # taken away while we looked
                    continue
                except OSError as exc:
                    raise ConnectorError(f"{entry.path}: cannot read ({exc.strerror or exc})") from None
                ident = f"{prefix}/{entry.name}" if prefix else entry.name
                found.append((info.st_mtime_ns, ident, info.st_size))
        found.sort(key=lambda item: (item[0], PurePosixPath(item[1]).name))
        return [MessageRef(ident, size) for _, ident, size in found]

    def path_of(self, ref: MessageRef) -> Path:
        """The file a message id names; an id that points outside the listed folders is refused."""
        parts = PurePosixPath(ref.id).parts
        allowed = (len(parts) == 2 and parts[0] in ("new", "cur")) if self.maildir else len(parts) == 1
        if not allowed or parts[-1] in (".", "..") or "\\" in ref.id:
            raise ConnectorError(f"{self.folder}: {ref.id!r} is not a message id of this folder")
        return self.folder.joinpath(*parts)

    async def fetch(self, ref: MessageRef) -> bytes:
        """The file's bytes, exactly as stored."""
        path = self.path_of(ref)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ConnectorError(f"{path}: the message is no longer in the folder") from None
        except OSError as exc:
            raise ConnectorError(f"{path}: cannot read ({exc.strerror or exc})") from None

    async def acknowledge(self, ref: MessageRef) -> None:
        """Delete the file, or move it into the processed folder; a file already gone is fine."""
        path = self.path_of(ref)
        await asyncio.to_thread(self._acknowledge, path)

    def _acknowledge(self, path: Path) -> None:
        try:
            if self.processed is None:
                path.unlink(missing_ok=True)
                return
            target_folder = self.processed / "cur" if is_maildir(self.processed) else self.processed
            target_folder.mkdir(parents=True, exist_ok=True)
            if path.exists():
                _move(path, _free_name(target_folder, path.name))
        except FileNotFoundError:  # someone else took it between our look and the move
            return
        except OSError as exc:
            where = f" to {self.processed}" if self.processed is not None else ""
            raise ConnectorError(f"{path}: cannot remove{where} ({exc.strerror or exc})") from None

    async def close(self) -> None:
        """Nothing is held open between calls."""


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem.N.suffix`` if that name is already taken."""
    target = folder / name
    stem, suffix = (name[: -len(Path(name).suffix)], Path(name).suffix) if Path(name).suffix else (name, "")
    number = 1
    while target.exists():
        target = folder / f"{stem}.{number}{suffix}"
        number += 1
    return target


def _move(source: Path, target: Path) -> None:
    """Rename within a file system; copy and delete across file systems."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(source, target)
        source.unlink()

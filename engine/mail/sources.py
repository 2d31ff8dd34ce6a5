"""Reads raw messages from the places mail is kept on disk: .eml files, folders of them, maildirs, mbox files.

Contract: ``iter_source_messages`` yields every message as raw bytes with a human-readable origin, in a
stable order, and raises ``SourceError`` naming the path for anything it cannot read; it never parses mail.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import SourceError

_MAILDIR_SUBFOLDERS = ("cur", "new", "tmp")


@dataclass(frozen=True)
class SourceMessage:
    """One message read from disk: where it came from and its exact bytes."""

    origin: str
    raw: bytes = field(repr=False)


def iter_source_messages(paths: Iterable[Path]) -> Iterator[SourceMessage]:
    """Yield every message under the given paths; missing paths are refused before anything is read.

    A maildir (cur/ new/ tmp/) gives the files in new/ then cur/, sorted by name; an mbox file (starts
    with "From ") gives each message; any other regular file is one message; any other folder gives the
    *.eml files directly inside it, sorted by name.
    """
    checked = list(paths)
    for path in checked:
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder")
        if not (path.is_file() or path.is_dir()):
            raise SourceError(f"{path}: neither a regular file nor a folder")
    return _iter_paths(checked)


def _iter_paths(paths: list[Path]) -> Iterator[SourceMessage]:
    for path in paths:
        if path.is_dir():
            if is_maildir(path):
                yield from _iter_maildir(path)
            else:
                yield from _iter_eml_folder(path)
        elif _is_mbox(path):
            yield from _iter_mbox(path)
        else:
            yield SourceMessage(str(path), _read(path))


def is_maildir(path: Path) -> bool:
    """Whether a folder is a maildir: it has cur/, new/ and tmp/ subfolders."""
    return all((path / name).is_dir() for name in _MAILDIR_SUBFOLDERS)


def _iter_maildir(path: Path) -> Iterator[SourceMessage]:
    for sub in ("new", "cur"):
        for entry in _sorted_files(path / sub):
            if not entry.name.startswith("."):
                yield SourceMessage(f"maildir:{entry}", _read(entry))


def _iter_eml_folder(path: Path) -> Iterator[SourceMessage]:
    for entry in _sorted_files(path):
        if entry.suffix.lower() == ".eml":
            yield SourceMessage(str(entry), _read(entry))


def _sorted_files(folder: Path) -> list[Path]:
    try:
        return sorted(entry for entry in folder.iterdir() if entry.is_file())
    except OSError as exc:
        raise SourceError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc


def _is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(5) == b"From "
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _iter_mbox(path: Path) -> Iterator[SourceMessage]:
    try:
        box = mailbox.mbox(path, create=False)
    except (OSError, mailbox.Error) as exc:
        raise SourceError(f"{path}: cannot open the mbox file ({exc})") from exc
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield SourceMessage(f"mbox:{path}#{number}", box.get_bytes(key))
    except (OSError, mailbox.Error) as exc:
        raise SourceError(f"{path}: cannot read the mbox file ({exc})") from exc
    finally:
        box.close()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc

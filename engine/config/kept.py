"""What start-up makes from a pack (its parsed YAML, subject parser, templates' code), kept between runs.

An entry is named by its kind and the SHA-256 of everything it was made from (the file's text,
the versions of the libraries that made it), so a changed input makes a new entry; only what
was made without a mistake is kept (a mistake is found by really making it, every time). The
folder is ``$XDG_CACHE_HOME/mailgate`` (else ``~/.cache/mailgate``), made private to its user;
one that is another's or that others may write to is not used. Reading back builds only the
classes its kind names (none: plain data only), and any failure (a missing, short, corrupt or
foreign entry, a folder that cannot be written) is a miss: the caller makes the thing as if
there were no cache. At most ``ENTRIES_KEPT`` entries of each kind are kept (a kind may say how
many), the oldest written going first.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENTRIES_KEPT = 64
_FORMAT = b"mailgate-kept-1\n"


def cache_dir() -> Path | None:
    """The user's private cache folder for mailgate, made if missing; None if there is none to trust."""
    root = os.environ.get("XDG_CACHE_HOME", "")
    try:
        base = Path(root) if os.path.isabs(root) else Path.home() / ".cache"
        folder = base / "mailgate"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = folder.stat()
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    mine = found.st_uid == os.geteuid() and not found.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return folder if mine and stat.S_ISDIR(found.st_mode) else None


def entry_name(kind: str, sources: Iterable[str]) -> str:
    """The file name of the entry of ``kind`` made from ``sources`` (Python's version is added)."""
    digest = hashlib.sha256(_FORMAT + f"{kind}\n{sys.version_info[:2]}\n".encode())
    for source in sources:
        encoded = source.encode("utf-8", "surrogatepass")
        digest.update(b"%d\n" % len(encoded) + encoded)
    return f"{kind}-{digest.hexdigest()}.pickle"


class _Unpickler(pickle.Unpickler):
    """Builds the classes of the given modules and nothing else."""

    def __init__(self, data: bytes, modules: frozenset[str]) -> None:
        super().__init__(io.BytesIO(data))
        self.modules = modules

    def find_class(self, module: str, name: str) -> Any:
        """The class ``module.name`` if the entry's kind may hold it; else the entry is refused."""
        if module not in self.modules:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in this entry")
        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise pickle.UnpicklingError(f"{module}.{name} is not a class")
        return found


def read_entry(kind: str, sources: Iterable[str], modules: frozenset[str] = frozenset()) -> tuple[bool, Any]:
    """(True, value) if ``kind`` of ``sources`` is kept (of ``modules``' classes); else (False, None)."""
    folder = cache_dir()
    if folder is None:
        return False, None
    try:
        data = (folder / entry_name(kind, sources)).read_bytes()
        if not data.startswith(_FORMAT):
            return False, None
        return True, _Unpickler(data[len(_FORMAT) :], modules).load()
    except Exception:  # missing, short, corrupt or foreign: make it as if there were no cache
        return False, None


def write_entry(kind: str, sources: Iterable[str], value: Any, *, entries_kept: int | None = None) -> None:
    """Keep ``value``, made from ``sources``; a failure to write is ignored (the next run makes it again).

    Of ``kind``, the ``entries_kept`` (default ``ENTRIES_KEPT``) written last are kept.
    """
    folder = cache_dir()
    if folder is None:
        return
    try:
        data = _FORMAT + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{kind}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, folder / entry_name(kind, sources))  # readers see all of it or nothing
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except Exception:  # a full disk, a read-only home, a value that does not pickle
        return
    _forget_oldest(folder, kind, ENTRIES_KEPT if entries_kept is None else entries_kept)


def _forget_oldest(folder: Path, kind: str, entries_kept: int) -> None:
    """Remove the entries of ``kind`` written longest ago beyond ``entries_kept``."""
    try:
        entries = [(entry.stat().st_mtime_ns, entry) for entry in folder.glob(f"{kind}-*.pickle")]
        for _, entry in sorted(entries)[:-entries_kept]:
            entry.unlink(missing_ok=True)
    except OSError:  # another process removed one first
        return

"""Rule-pack YAML parsed once per content and kept between processes, in the user's cache folder.

An entry is named by the SHA-256 of the file's text, ruamel.yaml's version and Python's, so an
edited file is parsed afresh; only a tree that parsed cleanly is kept (a mistake is found by a
real parse, every time), and only rule packs use it (a config may hold secrets). The folder is
``$XDG_CACHE_HOME/mailgate`` (else ``~/.cache/mailgate``), made private to its user; one that is
another's or that others may write to is not used. Reading back builds ruamel.yaml's node and
scalar classes only, and any failure (a missing, short, corrupt or foreign entry, a folder that
cannot be written) is a miss: the file is parsed as if there were no cache. At most
``ENTRIES_KEPT`` entries are kept, the oldest written going first.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import ruamel.yaml

ENTRIES_KEPT = 64
_FORMAT = b"mailgate-yaml-rt-1\n"  # what is parsed how (round trip, duplicate keys refused)
# the modules whose classes a parsed tree is made of; anything else in an entry makes it a miss
_TREE_MODULES = frozenset(
    {
        "ruamel.yaml.anchor",
        "ruamel.yaml.comments",
        "ruamel.yaml.error",
        "ruamel.yaml.scalarbool",
        "ruamel.yaml.scalarfloat",
        "ruamel.yaml.scalarint",
        "ruamel.yaml.scalarstring",
        "ruamel.yaml.tag",
        "ruamel.yaml.timestamp",
        "ruamel.yaml.tokens",
    }
)


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


def entry_name(text: str) -> str:
    """The file name of the entry for YAML ``text``."""
    digest = hashlib.sha256(_FORMAT)
    digest.update(f"{ruamel.yaml.__version__}\n{sys.version_info[:2]}\n".encode())
    digest.update(text.encode("utf-8", "surrogatepass"))
    return f"pack-yaml-{digest.hexdigest()}.pickle"


class _TreeUnpickler(pickle.Unpickler):
    """Builds ruamel.yaml's classes and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """The class ``module.name`` if a parsed tree may hold it; else the entry is refused."""
        if module not in _TREE_MODULES:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a parsed YAML tree")
        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise pickle.UnpicklingError(f"{module}.{name} is not a class")
        return found


def read_entry(text: str) -> tuple[bool, Any]:
    """(True, the tree) if ``text`` was parsed before and kept; else (False, None)."""
    folder = cache_dir()
    if folder is None:
        return False, None
    try:
        data = (folder / entry_name(text)).read_bytes()
        if not data.startswith(_FORMAT):
            return False, None
        return True, _TreeUnpickler(io.BytesIO(data[len(_FORMAT) :])).load()
    except Exception:  # missing, short, corrupt or foreign: parse as if there were no cache
        return False, None


def write_entry(text: str, tree: Any) -> None:
    """Keep ``tree``, parsed from ``text``; a failure to write is ignored (the next run parses again)."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        data = _FORMAT + pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".pack-yaml-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, folder / entry_name(text))  # readers see all of it or nothing
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except Exception:  # a full disk, a read-only home, a tree that does not pickle
        return
    _forget_oldest(folder)


def _forget_oldest(folder: Path) -> None:
    """Remove the entries written longest ago beyond ``ENTRIES_KEPT``."""
    try:
        entries = [(entry.stat().st_mtime_ns, entry) for entry in folder.glob("pack-yaml-*.pickle")]
        for _, entry in sorted(entries)[:-ENTRIES_KEPT]:
            entry.unlink(missing_ok=True)
    except OSError:  # another process removed one first
        return

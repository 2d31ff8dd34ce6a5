"""An installed copy of another revision of mailgate, for benchmarks that compare two in one run.

    build_revision(ROOT, "0bdbdc9")  # -> Installed(revision, commit, mailgate=Path(...))

The revision's tree is exported with ``git archive`` (nothing is added to the repository, not
even a worktree) into a folder of the system's temporary directory named after its commit, and
installed there with its own dependencies into its own venv (``pip install``, so it takes a
minute the first time). The folder is kept and reused by later runs: a run that finds the
installation complete (``.installed`` written last) does not build it again.

``write_bytecode(ROOT)`` gives this tree what ``pip install`` gave the revision: its modules'
bytecode (see there).
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Installed:
    """One revision installed: its name as asked, its commit, and its ``mailgate`` console script."""

    revision: str
    commit: str
    mailgate: Path

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.mailgate.parent / "python"


def resolve(root: Path, revision: str) -> str:
    """The full commit id of ``revision`` in the repository at ``root``."""
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"bench: no revision {revision!r} in {root}: {found.stderr.strip()}")
    return found.stdout.strip()


def build_revision(root: Path, revision: str) -> Installed:
    """``revision`` of the repository at ``root``, installed in a venv of its own (built once)."""
    commit = resolve(root, revision)
    home = Path(tempfile.gettempdir()) / f"mailgate-bench-rev-{commit[:12]}"
    done = home / ".installed"
    installed = Installed(revision, commit, home / ".venv" / "bin" / "mailgate")
    if done.exists():
        return installed
    print(f"bench: installing {revision} ({commit[:12]}) into {home} (once)", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(root), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(home)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"bench: git archive {commit} failed")
    subprocess.run([sys.executable, "-m", "venv", str(home / ".venv")], check=True)
    pip = [str(installed.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(home)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done.write_text(commit + "\n")
    return installed


PACKAGES = ("engine", "connectors")  # what the console script imports from a tree


def write_bytecode(root: Path) -> None:
    """Write the bytecode of the tree at ``root`` (its ``__pycache__``), as ``pip install`` does.

    This tree is installed for development (``pip install -e``), so its modules' bytecode is
    written only when Python imports them, and never under ``PYTHONDONTWRITEBYTECODE``: then every
    ``mailgate`` a benchmark starts compiles each module it imports from source again (a tenth of
    a second of CPU at every start-up, and in every parse worker), which an installed mailgate, or
    a revision installed by ``build_revision``, never does. Modules whose bytecode is current are
    left as they are.
    """
    for package in PACKAGES:
        if not compileall.compile_dir(root / package, quiet=1):
            raise SystemExit(f"bench: cannot compile {root / package}")

"""What ``mailgate run`` imports on SQLite: nothing only PostgreSQL, upgrades, the console or some mails need.

Every module imported is start-up time that each ``mailgate run --once`` (and every ``deliver``)
pays; these are imported where they are used instead (see each one's import).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NOT_NEEDED_ON_SQLITE = (
    "psycopg",
    "sqlalchemy.dialects.postgresql",  # engine.storage.leases imports its insert() for PostgreSQL only
    "alembic",
    "engine.storage.migrate",
    "engine.storage.revisions",
    "engine.storage.console",  # the console's tables: engine.storage.db.schema_metadata adds them
    "engine.web.app",
    "uvicorn",
    "starlette",
    "argon2",
    "dkim",
    "dns",
    "authres",
    "charset_normalizer",
    "engine.mail.reply_text",  # engine.mail.message.reply_portion imports it at the first reply it trims
    "exchangelib",
    "msal",
    "httpx",
)

_LOADED = """
import atexit, sys
NAMES = sys.argv[1].split(",")

def loaded():
    found = {n for n in NAMES for m in sys.modules if m == n or m.startswith(n + ".")}
    print("loaded:" + ",".join(sorted(found)))

if sys.argv[2] == "import":
    import engine.cli
    loaded()
else:
    atexit.register(loaded)
    sys.argv = ["mailgate", *sys.argv[2:]]
    from engine.launch import main
    main()
"""


def _loaded(root: Path, *argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, ",".join(NOT_NEEDED_ON_SQLITE), *argv],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("loaded:"))
    return [name for name in line.removeprefix("loaded:").split(",") if name]


def _desk(root: Path) -> Path:
    (root / "inbox").mkdir()
    (root / "mailgate.yaml").write_text(
        "database: sqlite:///desk.sqlite\naccounts:\n"
        "  - name: helpdesk\n    address: helpdesk@example.com\n    connector: {type: folder, path: inbox}\n"
    )
    return root


def test_importing_the_cli_loads_nothing_a_sqlite_run_does_not_need(tmp_path: Path) -> None:
    assert _loaded(tmp_path, "import") == []


def test_mailgate_run_once_on_sqlite_loads_nothing_it_does_not_need(tmp_path: Path) -> None:
    root = _desk(tmp_path)
    _loaded(root, "--config", "mailgate.yaml", "run", "--once")  # creates the database (every table)

    assert _loaded(root, "--config", "mailgate.yaml", "run", "--once") == []

"""The console entry point (engine/launch.py): the CLI imported with collection paused, then frozen."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc, sys
from engine import launch
sys.argv = ["mailgate", "--help"]
try:
    launch.main()
except SystemExit as end:
    print(end.code, gc.isenabled(), gc.get_freeze_count() > 10000, file=sys.stderr)
"""


def test_the_console_entry_runs_the_cli_with_the_collector_on_and_the_import_frozen() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert "Usage: mailgate" in done.stdout
    assert done.stderr.split()[-3:] == ["0", "True", "True"], done.stderr

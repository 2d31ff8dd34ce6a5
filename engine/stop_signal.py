"""A SIGTERM that arrives before the command is known, held until the command says what it means.

``engine.launch`` holds SIGTERM while it imports the CLI; ``mailgate run`` then stops at once with
status 0 on a held one (``held_stop_signal``), every other command gives SIGTERM its usual effect
again (``release_stop_signal``). A module of its own, importing nothing of mailgate, so that both
the launcher and the service read it without importing each other.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

_held: list[int] = []


def _hold(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


def hold_stop_signal() -> None:
    """Hold SIGTERM from now on (the launcher, before importing the CLI)."""
    signal.signal(signal.SIGTERM, _hold)


def held_stop_signal() -> int | None:
    """The SIGTERM that arrived during start-up, if one did (``mailgate run`` stops on it)."""
    return _held[0] if _held else None


def release_stop_signal() -> None:
    """Give SIGTERM its usual effect again (commands other than ``run``), and act on one held."""
    if signal.getsignal(signal.SIGTERM) is not _hold:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _held:
        os.kill(os.getpid(), signal.SIGTERM)

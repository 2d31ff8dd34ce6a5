"""The error hierarchy: every error a user can see carries where it happened."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class MailgateError(Exception):
    """Base of every error mailgate reports to a user (never shown as a traceback)."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a config or rule pack, at a 1-based line and column."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class Span:
    """Where a value was written: a file and a 1-based line and column."""

    file: str
    line: int
    col: int

    def problem(self, message: str) -> Problem:
        """A mistake reported at this position."""
        return Problem(self.file, self.line, self.col, message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ConfigError(MailgateError):
    """A config or rule pack was refused; carries every problem found, each with its location."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MailError(MailgateError):
    """A message could not be read; ``reason`` is what the quarantine records."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SourceError(MailgateError):
    """A path given to ``mailgate process`` could not be read as mail."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

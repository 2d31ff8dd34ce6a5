"""The log's lines: an event as a JSON object with the keys of its ``key=value`` line and the
values' types; any other line, or one with a traceback, still one JSON object on one line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable

from engine.logformat import JsonLogFormatter
from engine.service.events import log_event, log_event_with_traceback


def json_lines(emit: Callable[[], None]) -> list[dict[str, object]]:
    """What ``emit()`` logs on the ``mailgate`` loggers, as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("mailgate")
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        emit()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_log_line_carries_the_event_fields_with_their_types() -> None:
    [line] = json_lines(
        lambda: log_event(logging.INFO, "polled", account="helpdesk", processed=3, took=0.12345)
    )
    assert list(line) == ["time", "level", "logger", "event", "account", "processed", "took"]
    assert (line["level"], line["logger"], line["event"]) == ("INFO", "mailgate.service", "polled")
    assert (line["processed"], line["took"]) == (3, 0.123)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))


def test_a_json_log_line_of_another_logger_or_with_a_traceback_stays_one_line() -> None:
    try:
        raise RuntimeError("a bug\nover two lines")
    except RuntimeError as exc:
        failure = exc

    def emit() -> None:
        logging.getLogger("mailgate.outgoing").warning("2 outgoing messages wait")
        log_event_with_traceback(logging.ERROR, "poll_failed", failure, account="x", error="a bug")

    plain, failed = json_lines(emit)
    assert (plain["logger"], plain["message"]) == ("mailgate.outgoing", "2 outgoing messages wait")
    assert failed["event"] == "poll_failed" and "RuntimeError: a bug" in str(failed["exception"])

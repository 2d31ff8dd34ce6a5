"""The service's progress log: one line per event, ``event=NAME key=value ...``, easy to grep.

Values with spaces, quotes, ``=`` or nothing at all are written as JSON strings, so a line always
splits back into its pairs (``shlex.split`` reads them)::

    event=processed account=helpdesk uid=00000003 outcome=logged rule=new_call entity=call number=7
    event=poll_failed account=sales error="connection refused" retry_in=7.4

With ``mailgate --log-format json`` each line is instead one JSON object with the same keys
(``engine.logformat``): the event's fields travel on the log record for that.
"""

from __future__ import annotations

import json
import logging
import re

from engine.logformat import EVENT_ATTRIBUTE

log = logging.getLogger("mailgate.service")

_PLAIN = re.compile(r"^[^\s\"'=\\]+$")


def format_value(value: object) -> str:
    """One value as written in a log line: bare when it can be, else a JSON string."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text, ensure_ascii=False)


def format_event(event: str, **fields: object) -> str:
    """The line for one event: ``event=NAME`` then the fields in the order given."""
    pairs = [f"event={event}"] + [f"{key}={format_value(value)}" for key, value in fields.items()]
    return " ".join(pairs)


def log_event(level: int, event: str, **fields: object) -> None:
    """Log one event on the ``mailgate.service`` logger."""
    if log.isEnabledFor(level):
        log.log(level, "%s", format_event(event, **fields), extra={EVENT_ATTRIBUTE: (event, fields)})


def log_event_with_traceback(level: int, event: str, exc: BaseException, **fields: object) -> None:
    """Log one event with the traceback of ``exc`` (a bug, not a failure of the outside world)."""
    if log.isEnabledFor(level):
        log.log(
            level, "%s", format_event(event, **fields), exc_info=exc, extra={EVENT_ATTRIBUTE: (event, fields)}
        )

"""How every ``mailgate`` command writes its log to standard error: text lines, or JSON lines.

Text (the default): ``TIME LEVEL LOGGER MESSAGE``, where the service's events are ``event=NAME
key=value ...`` (``engine.service.events``). JSON (``mailgate --log-format json``): one object per
line with the same keys (``JsonLogFormatter``): ``time``, ``level``, ``logger``, then ``event`` and
the event's fields; a line that is not an event has ``message`` (and ``exception``, a traceback).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# the attribute of a log record that carries an event's name and fields (read by the JSON lines)
EVENT_ATTRIBUTE = "mailgate_event"


def _json_value(value: object) -> object:
    """A field's value in a JSON line: numbers, text, true/false and null as such, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, 3)
    return str(value)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, on one line (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        carried = getattr(record, EVENT_ATTRIBUTE, None)
        if carried is not None:
            event, fields = carried
            data["event"] = event
            data.update((key, _json_value(value)) for key, value in fields.items())
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(*, verbose: bool, log_format: str = "text") -> None:
    """Log to standard error: INFO and up with ``verbose``, else WARNING; as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])

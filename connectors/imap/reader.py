"""Reading the server's replies for aioimaplib in linear time.

aioimaplib's ``data_received`` formats every chunk it receives for a debug log (whether or not
debug logging is on), copies the rest of the chunk after every line it takes (a chunk of small
FETCH literals is copied dozens of times), and its FETCH command rescans every line received so
far after each new one. On a backlog of small mails that is most of the service's IMAP cost.

``read_responses`` is the same state machine as aioimaplib's ``_handle_responses`` (the same
``_handle_line``, literals, ``current_command`` and ``incomplete_line``), walking the chunk by
offset; ``CountingFetchCommand`` keeps its parenthesis balance as lines arrive. Both use only the
command attributes aioimaplib's own code uses (pyproject.toml keeps ``aioimaplib`` below 3).

Contract: for any split of the same bytes into chunks, the commands end with the same response
lines, literals and results as with aioimaplib's reader (tests/unit/test_imap_reader.py).
"""

from __future__ import annotations

import logging
from typing import Any

from aioimaplib.aioimaplib import (  # type: ignore[import-untyped]
    Command,
    FetchCommand,
    literal_data_re,
)

_LIBRARY_LOG = logging.getLogger("aioimaplib.aioimaplib")
_CRLF = b"\r\n"


class CountingFetchCommand(FetchCommand):  # type: ignore[misc]
    """A FETCH whose "is a parenthesis still open" check costs one line, not all lines so far."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open_parentheses = 0
        super().__init__(*args, **kwargs)

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        """Keep the balance of the current message's data (from its last ``n FETCH (`` line)."""
        if isinstance(line, bytes):
            balance = line.count(b"(") - line.count(b")")
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._open_parentheses = balance
            else:
                self._open_parentheses += balance
        super().append_to_resp(line, result)

    def wait_data(self) -> bool:
        """Whether the current message's data is still incomplete (a literal or a parenthesis)."""
        return bool(self.wait_literal_data() or self._open_parentheses != 0)


def read_responses(protocol: Any, chunk: bytes) -> None:
    """Feed one received chunk to an ``IMAP4ClientProtocol`` (in place of its ``data_received``)."""
    if _LIBRARY_LOG.isEnabledFor(logging.DEBUG):
        _LIBRARY_LOG.debug("Received : %s", chunk)
    data = protocol.incomplete_line + chunk if protocol.incomplete_line else chunk
    protocol.incomplete_line = b""
    command: Command | None = protocol.current_command
    position, size = 0, len(data)
    while True:
        if position == size:  # all taken: a command still waiting for data stays current
            if protocol.pending_sync_command is not None:
                protocol.pending_sync_command.flush()
            if command is not None and not command.wait_data():
                command = None
            break
        if command is not None and command.wait_literal_data():
            wanted = command._expected_size - len(command._resp_literal_data)
            taken = min(wanted, size - position)
            with memoryview(data) as view:
                command._resp_literal_data += view[position : position + taken]
            position += taken
            if command.wait_literal_data():
                command._reset_timer()
                break
            command.append_to_resp(command._resp_literal_data)
            command._end_literal_data()
        end = data.find(_CRLF, position)
        if end < 0:
            protocol.incomplete_line = data[position:]
            break
        line = data[position:end]
        position = end + 2
        handled: Command | None = protocol._handle_line(line, command)
        literal = literal_data_re.match(line)
        if literal:
            if handled is None:
                handled = Command("NIL", "unused")
            handled.begin_literal_data(int(literal.group("size")))
            command = handled
        elif handled is not None and handled.wait_data():
            command = handled
        else:
            command = None
    protocol.current_command = command

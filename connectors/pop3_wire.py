"""POP3 on poplib's socket: one command and its one-line reply, RETR of any size, replies as text.

Functions on a connected ``poplib.POP3``; the connector (``connectors.pop3``) owns the session.
"""

from __future__ import annotations

import base64
import contextlib
import io
import poplib
from typing import cast

READ_CHUNK = 1 << 20  # a message line longer than this is read in pieces, never refused
_END_OF_MESSAGE = (b"\n.\r\n", b"\n.\n")
_EMPTY_MESSAGE = (b".\r\n", b".\n")


def command(client: poplib.POP3, line: bytes) -> bytes:
    """Send one command line and return the server's one-line reply (without CRLF)."""
    client.sock.sendall(line + b"\r\n")
    reply = client.file.readline(READ_CHUNK)
    if not reply:
        raise poplib.error_proto("connection closed by the server")
    return reply.rstrip(b"\r\n")


def retrieve(client: poplib.POP3, number: int) -> bytes:
    """RETR one message into bytes, undoing dot-stuffing; lines of any length are accepted.

    Read in large pieces, not line by line: POP3 sends nothing after a reply until the next
    command, so the reply is complete exactly when what was received ends with the terminating
    line (a lone "."; a content line starting with "." is sent with the dot doubled).
    """
    reply = command(client, f"RETR {number}".encode())
    if not reply.startswith(b"+OK"):
        raise poplib.error_proto(reply)
    received = bytearray()
    read = cast(io.BufferedReader, client.file).read1
    while not (received.endswith(_END_OF_MESSAGE) or received in _EMPTY_MESSAGE):
        piece = read(READ_CHUNK)
        if not piece:
            raise poplib.error_proto("connection closed in the middle of a message")
        received += piece
    end = len(received) - (3 if received.endswith(b".\r\n") else 2)  # the terminating line goes
    data = bytes(memoryview(received)[:end])
    del received
    if b"\n.." in data:
        data = data.replace(b"\n..", b"\n.")
    return data[1:] if data.startswith(b"..") else data


def is_continuation(reply: bytes) -> bool:
    """Whether a reply is a SASL continuation (``+`` or ``+ data``)."""
    return reply == b"+" or reply.startswith(b"+ ")


def base64_text(data: bytes) -> str:
    """A base64 challenge as text (as it came, if it is not base64)."""
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", "replace")
    except ValueError:
        return reply_text(data)


def reply_text(value: object) -> str:
    """A server reply or a poplib error as text."""
    if isinstance(value, Exception) and len(value.args) == 1:
        value = value.args[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def drop(client: poplib.POP3) -> None:
    """Close the socket without QUIT (the server forgets this session's deletions)."""
    with contextlib.suppress(OSError):
        client.close()

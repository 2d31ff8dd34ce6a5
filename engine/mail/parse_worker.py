"""The parse worker's own process: ``python -m engine.mail.parse_worker``.

It imports only what reading mail needs (``engine.mail.message``), so it is up in a tenth of a second, and
it only turns bytes into ``IncomingMessage`` values. The service (``engine.service.parsing``)
writes it frames on stdin and reads the answers, in the same order, on stdout.

Contract (the wire): each frame is an 8-byte big-endian length and that many bytes of pickle.
A request is ``(our_addresses, [raw, ...])``; its answer is ``[IncomingMessage | str, ...]``, one
item per raw (a str is the ``MailError`` reason). End of stdin ends the worker. It ignores SIGINT
(Ctrl-C reaches the whole process group; the service stops it) and never outlives the service.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
import threading
import time
from typing import IO, cast

from engine.errors import MailError
from engine.mail.message import IncomingMessage, parse_message

WATCHDOG_SECONDS = 0.5
FRAME_HEADER = struct.Struct(">Q")
MAX_FRAME_BYTES = 1 << 30  # far above any batch (the service sends at most 4 MB of mail at once)
_PR_SET_PDEATHSIG = 1


def parse_batch(raws: list[bytes], our_addresses: frozenset[str]) -> list[IncomingMessage | str]:
    """Each message parsed, or the reason it cannot be read."""
    parsed: list[IncomingMessage | str] = []
    for raw in raws:
        try:
            parsed.append(parse_message(raw, our_addresses=our_addresses))
        except MailError as exc:
            parsed.append(exc.reason)
    return parsed


def write_frame(stream: IO[bytes], value: object) -> None:
    """Write one frame (see the module) and flush it."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> object | None:
    """Read one frame; None at a clean end of the stream."""
    header = stream.read(FRAME_HEADER.size)
    if not header:
        return None
    if len(header) != FRAME_HEADER.size:
        raise EOFError("the stream ended inside a frame header")
    (size,) = FRAME_HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {size} bytes is not one of ours")
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the stream ended inside a frame")
    value: object = pickle.loads(data)
    return value


def _never_outlive(service_pid: int) -> None:
    """Leave Ctrl-C to the service, and end with it (the kernel's death signal, and a watchdog)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))

    def watchdog() -> None:
        while os.getppid() == service_pid:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(0)

    threading.Thread(target=watchdog, name="service-watchdog", daemon=True).start()


def main() -> None:
    """Answer requests from stdin until it ends; on a broken stream, one line to stderr and exit 1."""
    _never_outlive(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    try:
        while True:
            request = read_frame(requests)
            if request is None:
                return
            our_addresses, raws = cast(tuple[frozenset[str], list[bytes]], request)
            write_frame(answers, parse_batch(raws, our_addresses))
    except Exception as exc:  # the service parses in its own process from now on, and says so
        print(f"mailgate parse worker: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

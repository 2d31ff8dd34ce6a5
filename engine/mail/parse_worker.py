"""The parse worker's own process: ``python -m engine.mail.parse_worker``.

It imports only what reading mail needs (``engine.mail.message``), so it is up in a tenth of a second, and
it only turns bytes into ``IncomingMessage`` values. The service (``engine.service.parsing``)
writes it frames on stdin and reads the answers, in the same order, on stdout.

Contract (the wire): each frame is an 8-byte big-endian length and that many bytes of pickle.
A request is ``(our_addresses, time_limit_seconds, keep_originals, [raw, ...], keywords)`` (the
last may be left out); it is answered by one frame per raw, in order (when each is written: see
the progress, below): a triple of what reading gave, an ``IncomingMessage`` or a str (the ``MailError``
reason; reading longer than the time limit gives a reason saying so); its subject read with
``keywords`` (the account's pack's, engine.rules.subject.parse_subject), or None when none were
given or it could not be read in time (the service reads it then); and, for a message that was
read, its original: with
``keep_originals`` a pair of paths ``(originals_file, account)``, the original is kept in that
originals' file (engine.storage.original_file), which the answer says with True: the request's
originals are one transaction, committed before the request's last answer is written; when they
could not be, that last answer's original is False, and every True of the request is void (the
service keeps those originals itself); with ``keep_originals`` True, the original as it is stored
(``engine.mail.original_form.compress_original``) for the service to keep (also when the file
could not be written); else None. Either way the work is done here, off the service's process,
which is the busier one. End of stdin
ends the worker. It ignores SIGINT (Ctrl-C reaches the whole process group; the service stops it)
and never outlives the service. A message that holds the worker past its time limit anyway (in
code no signal interrupts) is the service's to notice: it stops the worker (engine/service/parsing.py).

Contract (the progress): given a second argument, the descriptor of a file of ``Progress.SIZE``
bytes, the worker shares it with the service (``Progress``): before each message it writes which
message of which request it reads and since when, and it sends its answers together, at the end
of each request and whenever the service has said there that it waits for one (then at once,
and after each message while it waits). So a backlog costs a write and a wake-up of the service
per request instead of per message, a waiting service gets each answer as soon as it is read,
and a stuck worker shows which message holds it. Without that argument each answer is sent as
soon as it is read.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import struct
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from engine.errors import MailError
from engine.mail.message import IncomingMessage, parse_message
from engine.mail.original_form import COMPRESSION, compress_original
from engine.storage.original_file import OriginalsFile
from engine.timelimit import ProcessingTimeout, time_limit

if TYPE_CHECKING:
    from engine.rules.subject import ParsedSubject
    from engine.rules.vocabulary import Keywords

WATCHDOG_SECONDS = 0.5
FRAME_HEADER = struct.Struct(">Q")
MAX_FRAME_BYTES = 1 << 30  # far above any batch (the service sends at most 4 MB of mail at once)
_PR_SET_PDEATHSIG = 1


# what was read, its subject as the pack reads it (or None), and its original: compressed, or True
# once kept in the originals' file, or None
Answer = tuple[IncomingMessage | str, "ParsedSubject | None", bytes | bool | None]
Keep = bool | tuple[str, str]  # keep no original, return it compressed, or (originals' file, account)


def parse_one(
    raw: bytes, our_addresses: frozenset[str], seconds: float, keywords: Keywords | None = None
) -> tuple[IncomingMessage | str, ParsedSubject | None]:
    """The message parsed, or the reason it cannot be read, and with ``keywords`` its subject read
    (None if it cannot be: the service reads it again), both within ``seconds`` (one timer)."""
    parsed: IncomingMessage | None = None
    try:
        with time_limit(seconds):
            parsed = parse_message(raw, our_addresses=our_addresses)
            return parsed, None if keywords is None else _subject_or_none(parsed.subject, keywords)
    except MailError as exc:
        return exc.reason, None
    except ProcessingTimeout as exc:
        return (f"{exc} while reading the message", None) if parsed is None else (parsed, None)


def _subject_or_none(subject: str, keywords: Keywords) -> ParsedSubject | None:
    """The subject as ``keywords`` read it; None where reading it fails (the service meets why)."""
    from engine.rules.subject import parse_subject  # here: only a worker given keywords needs the parser

    try:
        return parse_subject(subject, keywords)
    except Exception:
        return None


_FILES: dict[str, OriginalsFile] = {}  # the originals' files written to, each opened once
_FAILED: set[str] = set()  # those that could not be written: the service keeps their originals
_OPEN: dict[str, bool] = {}  # the files with a transaction open in this request: whether it still holds


def read_subject(subject: str, keywords: Keywords, seconds: float) -> ParsedSubject | None:
    """The subject as the pack's ``keywords`` read it, within ``seconds``; None if it cannot be."""
    try:
        with time_limit(seconds):
            return _subject_or_none(subject, keywords)
    except ProcessingTimeout:  # the service reads it again
        return None


def answer_one(
    raw: bytes,
    our_addresses: frozenset[str],
    seconds: float,
    keep_originals: Keep,
    keywords: Keywords | None = None,
) -> Answer:
    """The answer for one message (see the module): what reading gave, its subject, its original."""
    parsed, subject = parse_one(raw, our_addresses, seconds, keywords)
    if isinstance(parsed, str):  # a quarantined mail is kept whole instead of as an original
        return parsed, None, None
    if not keep_originals:
        return parsed, subject, None
    compressed = compress_original(raw)
    if not isinstance(keep_originals, tuple) or keep_originals[0] in _FAILED:
        return parsed, subject, compressed
    path, account = keep_originals
    try:
        kept = _FILES.get(path)
        if kept is None:
            kept = _FILES[path] = OriginalsFile(Path(path))
        if path not in _OPEN:
            _OPEN[path] = False
            kept.begin()
            _OPEN[path] = True
        kept.keep(
            account=account,
            key=parsed.key,
            fingerprint=parsed.fingerprint,
            message_id=parsed.message_id,
            received_at=datetime.now(UTC).replace(tzinfo=None),
            size=len(raw),
            compression=COMPRESSION,
            data=compressed,
        )
    except Exception as exc:  # a full disk, a broken file: the service keeps the originals instead
        _give_up_on(path, exc)
        return parsed, subject, compressed
    return parsed, subject, True


def _give_up_on(path: str, exc: Exception) -> None:
    """Leave the originals of ``path`` to the service from now on, the request's kept ones too."""
    _FAILED.add(path)
    if path in _OPEN:
        _OPEN[path] = False
        with contextlib.suppress(Exception):
            _FILES[path].rollback()
    print(f"mailgate parse worker: originals left to the service: {path}: {exc}", file=sys.stderr)


def commit_originals() -> bool:
    """Commit the originals kept in this request; False if any of them could not be kept."""
    held = True
    for path, holding in _OPEN.items():
        if holding:
            try:
                _FILES[path].commit()
            except Exception as exc:
                _give_up_on(path, exc)
                holding = False
        held = held and holding
    _OPEN.clear()
    return held


def _last_answer(answer: Answer) -> Answer:
    """The request's last answer, once its originals are committed: its original False if they were not."""
    if commit_originals():
        return answer
    return answer[0], answer[1], False


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


class Progress:
    """What the worker reads now, and whether the service waits for an answer (see the module).

    Contract: one file shared by the service (``create``) and its worker (``attach``): the worker
    writes ``reading`` before each message and ``reading(request, -1)`` after each request, the
    service writes ``want``. A value is a few aligned words, each read or written whole.
    """

    SIZE = 32
    _WANTED = struct.Struct("<q")  # at 0: nonzero while the service waits for an answer
    _READING = struct.Struct("<qqd")  # at 8: the request's number (from 1), the message's index, since

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, self.SIZE)

    @classmethod
    def create(cls) -> Progress:
        """A new shared file (the service's); its ``fd`` is to be passed to the worker."""
        fd = os.memfd_create("mailgate-parse-progress") if hasattr(os, "memfd_create") else _temporary_fd()
        os.ftruncate(fd, cls.SIZE)
        return cls(fd)

    @classmethod
    def attach(cls, fd: int) -> Progress:
        """The file the service created, by the descriptor it passed (the worker's)."""
        return cls(fd)

    def reading(self, request: int, index: int) -> None:
        """The worker starts to read message ``index`` of its ``request``-th request (-1: none)."""
        self._READING.pack_into(self._map, 8, request, index, time.monotonic() if index >= 0 else 0.0)

    def now_reading(self) -> tuple[int, int, float]:
        """The request, the message's index (-1: between requests) and since when (``time.monotonic``)."""
        if self._map.closed:  # the worker was stopped
            return 0, -1, 0.0
        request, index, since = self._READING.unpack_from(self._map, 8)
        return int(request), int(index), float(since)

    def want(self, waiting: bool) -> None:
        """Say whether the service waits for an answer (the worker then sends what it holds)."""
        if not self._map.closed:
            self._WANTED.pack_into(self._map, 0, 1 if waiting else 0)

    def wanted(self) -> bool:
        """Whether the service waits for an answer."""
        return bool(self._WANTED.unpack_from(self._map, 0)[0])

    def close(self) -> None:
        """Unmap and close the file (either side)."""
        with contextlib.suppress(Exception):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _temporary_fd() -> int:
    """A descriptor of an unnamed temporary file, where there is no ``memfd_create``."""
    import tempfile  # here: Linux has memfd_create

    with tempfile.TemporaryFile() as file:
        return os.dup(file.fileno())


class _Answers:
    """Answers written to the service: sent together (``send``), or each at once without progress."""

    def __init__(self, stream: IO[bytes], progress: Progress | None) -> None:
        self.stream, self.progress = stream, progress
        self._held: list[bytes] = []

    def add(self, value: object, *, last: bool) -> None:
        """Hold one answer; send it now if it is the request's last, or the service waits for one."""
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._held += (FRAME_HEADER.pack(len(data)), data)
        if last or self.progress is None or self.progress.wanted():
            self.send()

    def send_if_wanted(self) -> None:
        """Send what is held if the service waits for it."""
        if self._held and self.progress is not None and self.progress.wanted():
            self.send()

    def send(self) -> None:
        """Write every answer held, in one write, and flush."""
        if self._held:
            self.stream.write(b"".join(self._held))
            self._held.clear()
        self.stream.flush()


def _never_outlive(service_pid: int) -> None:
    """Leave Ctrl-C to the service, and end with it (the kernel's death signal, and a watchdog)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes  # here: the service imports this module too (for the frames), and never needs it

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
    progress = Progress.attach(int(sys.argv[2])) if len(sys.argv) > 2 else None
    requests, answers = sys.stdin.buffer, _Answers(sys.stdout.buffer, progress)
    try:
        number = 0
        while True:
            request = read_frame(requests)
            if request is None:
                return
            number += 1
            ours, seconds, keep, raws, *rest = cast(tuple[Any, ...], request)
            keywords = cast("Keywords | None", rest[0] if rest else None)
            # the first batch is answered before the subject parser is loaded (a few dozen ms):
            # until the worker has answered once, the service does not wait for it
            ready = "engine.rules.subject" in sys.modules
            raws = cast(list[bytes], raws)
            for index, raw in enumerate(raws):
                if progress is not None:
                    progress.reading(number, index)
                    answers.send_if_wanted()
                answer = answer_one(raw, ours, seconds, keep, keywords if ready else None)
                last = index == len(raws) - 1
                answers.add(_last_answer(answer) if last else answer, last=last)
            if progress is not None:
                progress.reading(number, -1)
            if keywords is not None and not ready:
                read_subject("", keywords, seconds)  # loads the parser for the next batches
    except Exception as exc:  # the service parses in its own process from now on, and says so
        print(f"mailgate parse worker: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Times parse_message on the hostile header inputs of the tests (prints, asserts nothing).

Run: ``.venv/bin/python bench/hostile_headers.py [NAME ...]``; each input runs in a child process
with a wall-clock cap (``--cap`` seconds, default 300), and its peak memory is reported.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable

BODY = b"\n\nhello\n"


def _mail(*headers: bytes) -> bytes:
    return b"\n".join(headers) + BODY


def from_of_quotes() -> bytes:
    """A 100 KB From header of double quotes."""
    return _mail(b"From: " + b'"' * 100_000, b"Subject: quotes", b"Message-ID: <q@example.org>")


def from_of_letters() -> bytes:
    """A 150 KB From header of the letter a."""
    return _mail(b"From: " + b"a" * 150_000, b"Subject: letters", b"Message-ID: <l@example.org>")


def subject_of_a_megabyte() -> bytes:
    """A 1 MB Subject (folded into 1,000-byte lines)."""
    folded = b"\n ".join([b"s" * 998] * 1_000)
    return _mail(b"From: a@example.org", b"Subject: " + folded, b"Message-ID: <s@example.org>")


def received_10000() -> bytes:
    """10,000 Received headers."""
    received = [
        b"Received: from relay%d.example.org by mx.example.org; Mon, 2 Mar 2026 08:00:00 +0000" % i
        for i in range(10_000)
    ]
    return _mail(b"From: a@example.org", *received, b"Subject: hops", b"Message-ID: <r@example.org>")


def to_100000() -> bytes:
    """100,000 addresses in To."""
    to = b",\n ".join(b"user%d@example.org" % i for i in range(100_000))
    return _mail(b"From: a@example.org", b"To: " + to, b"Subject: many", b"Message-ID: <t@example.org>")


def from_of_quoted_addresses() -> bytes:
    """A From just under its bounds: 120 addresses of 480 double quotes each (58 KB)."""
    return _mail(b"From: " + b",".join([b'"' * 480] * 120) + b" <a@example.org>", b"Subject: q")


def to_of_quoted_addresses() -> bytes:
    """A To just under its bounds: 250 addresses of 500 characters of quotes and dots (125 KB)."""
    element = b'"' * 250 + b"." * 248 + b"@x"
    return _mail(b"From: a@example.org", b"To: " + b",".join([element] * 250), b"Subject: q")


def to_of_2000_addresses() -> bytes:
    """A To of 2,000 short addresses (the most one header may name)."""
    return _mail(b"From: a@example.org", b"To: " + b",".join(b"u%d@x.org" % i for i in range(2000)))


def stray_lines() -> bytes:
    """15,000 stray lines (no colon) between header fields: 45 KB, kept as a continuation."""
    return _mail(b"From: a@example.org", b"xx\n" * 15_000 + b"Subject: stray")


def content_type_of_semicolons() -> bytes:
    """A Content-Type of 100 quoted parameters, each 600 semicolons long (60 KB)."""
    params = b"".join(b'; p%d="%s"' % (i, b";" * 600) for i in range(100))
    return _mail(b"From: a@example.org", b"Content-Type: text/plain" + params[:60_000])


def subject_of_64k() -> bytes:
    """A Subject just under its bound: 64,000 bytes of brackets, hashes and encoded-word starts."""
    return _mail(b"From: a@example.org", b"Subject: " + b"[CALL#=?" * 8_000)


INPUTS: dict[str, Callable[[], bytes]] = {
    "from_quotes_100k": from_of_quotes,
    "from_letters_150k": from_of_letters,
    "subject_1mb": subject_of_a_megabyte,
    "received_10000": received_10000,
    "to_100000": to_100000,
    "from_quoted_60k": from_of_quoted_addresses,
    "to_quoted_125k": to_of_quoted_addresses,
    "to_2000": to_of_2000_addresses,
    "stray_lines_15000": stray_lines,
    "ctype_semicolons": content_type_of_semicolons,
    "subject_64k": subject_of_64k,
}


def _run(name: str, answer: multiprocessing.Queue[str]) -> None:
    from engine.errors import MailError
    from engine.mail.message import parse_message

    raw = INPUTS[name]()
    start = time.perf_counter()
    try:
        message = parse_message(raw)
        outcome = f"parsed (from {message.from_address[:40]!r}, {len(message.to)} To)"
    except MailError as exc:
        outcome = f"MailError: {exc.reason[:100]}"
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    answer.put(f"{name:18} {elapsed:8.2f} s  peak {peak_mb:6.0f} MB  {outcome}")


def main() -> None:
    """Run each named input (all by default) in a child process and print its time and outcome."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(INPUTS)} (default: all)")
    parser.add_argument("--cap", type=float, default=300.0)
    args = parser.parse_args()
    for name in args.names or INPUTS:
        if name not in INPUTS:
            parser.error(f"unknown input {name!r}")
        answer: multiprocessing.Queue[str] = multiprocessing.Queue()
        child = multiprocessing.Process(target=_run, args=(name, answer))
        child.start()
        child.join(args.cap)
        if child.is_alive():
            child.kill()
            child.join()
            print(f"{name:18} > {args.cap:.0f} s (killed)")
        else:
            print(answer.get())


if __name__ == "__main__":
    main()

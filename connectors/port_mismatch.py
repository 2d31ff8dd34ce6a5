"""What to tell an admin whose account or outgoing server points at the wrong port or security mode.

Three mistakes look alike from the client's side and are common after copying a config:

- **another protocol on the port**: IMAP pointed at POP3's port (or SMTP's) gets a greeting it
  cannot parse; ``foreign_greeting`` names whose greeting it is, as soon as the first line arrives;
- **TLS to a port that does not speak it**: the handshake reads the server's plain-text greeting
  as a TLS record and OpenSSL says ``WRONG_VERSION_NUMBER``; ``not_tls`` turns that into advice;
- **plain text to a TLS port**: the server waits for a TLS hello, the client for a greeting, and
  nothing comes; ``silent_greeting`` says so when the wait runs out.

IMAP (``connectors/imap``), POP3 (``connectors/pop3.py``) and SMTP (``connectors/smtp.py``) use
the same words, each with its own names for the security modes.
"""

from __future__ import annotations

import re
import ssl

# the ports each protocol's servers listen on, for the advice (implicit TLS, then plain/STARTTLS)
_PORTS = {"IMAP": (993, 143), "POP3": (995, 110), "SMTP": (465, 587)}
# OpenSSL's reasons for "what came back is not a TLS record"
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)
_SHOWN = 80  # characters of a foreign greeting quoted in the message


def greeting_protocol(line: bytes) -> str | None:
    """Whose greeting ``line`` (a server's first line) is: ``IMAP``, ``POP3``, ``SMTP``, or None."""
    if re.match(rb"\* (OK|PREAUTH|BYE)\b", line, re.I):
        return "IMAP"
    if line.startswith((b"+OK", b"-ERR")):
        return "POP3"
    if re.match(rb"[2-5]\d\d[ -]", line):
        return "SMTP"
    if line.startswith((b"HTTP/", b"SSH-")):
        return line[:4].decode("ascii").rstrip("/-")
    return None


def foreign_greeting(expected: str, line: bytes) -> str | None:
    """The explanation when a server's first line is not an ``expected`` greeting, else None."""
    found = greeting_protocol(line)
    if found == expected:
        return None
    shown = line.decode("utf-8", "replace").strip()[:_SHOWN]
    tls, plain = _PORTS[expected]
    if found is None:
        return (
            f"the server's first line is not {_a(expected)} greeting ({shown!r}): is this the "
            f"{expected} port? ({expected} listens on {tls} with TLS, {plain} without)"
        )
    return (
        f"got {_a(found)} greeting ({shown!r}), not {expected}: this port speaks {found}; "
        f"{expected} listens on {tls} with TLS, {plain} without"
    )


def _a(protocol: str) -> str:
    """The protocol's name with its article, as it is read aloud: a POP3, an IMAP, an SMTP."""
    return f"{'a' if protocol == 'POP3' else 'an'} {protocol}"


def not_tls(error: BaseException | None, plain_modes: str) -> str | None:
    """The advice when ``error`` (or what caused it) says the port does not speak TLS, else None.

    ``plain_modes`` names the protocol's other security settings, e.g. "`security: starttls` or `plain`".
    """
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, ssl.SSLError) and (
            getattr(error, "reason", None) in _NOT_TLS_REASONS
            or any(reason.lower().replace("_", " ") in str(error).lower() for reason in _NOT_TLS_REASONS)
        ):
            return f"the server does not speak TLS on this port: try {plain_modes}"
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def silent_greeting(expected: str, waited: float, tls_mode: str) -> str:
    """The explanation when no greeting came at all within ``waited`` seconds (plain text to a TLS port?)."""
    tls, _ = _PORTS[expected]
    return (
        f"no greeting within {waited:g} s: if this port expects TLS from the start (like {tls}), "
        f"use `security: {tls_mode}`"
    )

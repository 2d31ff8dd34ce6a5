"""Building the MIME message of an outbox row: UTF-8 text and HTML alternatives with threading headers.

The message is the same bytes on every attempt (its Date is when it was queued, its Message-ID
the one stored with it), so a receiver can recognise a message sent twice after a crash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

from engine.config.model import AccountConfig, Config
from engine.config.outgoing import OutgoingServer
from engine.errors import MailgateError
from engine.rules.templates import text_to_html
from engine.storage.models import OutboxMessage

# Message-ID, In-Reply-To and References hold message ids, which RFC 5322 (section 3.6.4) forbids
# to encode: the standard policy would RFC 2047-encode one longer than a line (Outlook's are ~85
# characters), and the receiver could then not thread the reply. They are folded between ids only.
MESSAGE_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_FOLD_WIDTH = 78  # RFC 5322's recommended line length; a single longer id stays whole on its line
_LONGEST_ID = 980  # an id on a line of its own must fit RFC 5322's limit of 998 characters


class _ThreadingPolicy(EmailPolicy):
    """The SMTP policy, except that message-id headers are folded between ids and never encoded."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() in MESSAGE_ID_HEADERS:
            return fold_message_ids(name, str(value), self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in MESSAGE_ID_HEADERS:
            return fold_message_ids(name, str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


def fold_message_ids(name: str, value: str, linesep: str = "\r\n") -> str:
    """``name: <id> <id> …`` folded only between ids, so no id is ever split or encoded."""
    lines = [f"{name}:"]
    for token in value.split():
        if len(lines[-1]) + 1 + len(token) > _FOLD_WIDTH and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += f" {token}"
    return linesep.join(lines) + linesep


# CRLF line ends and 7-bit safe: every text part is quoted-printable, every non-ASCII header RFC 2047.
_POLICY = _ThreadingPolicy(linesep="\r\n", cte_type="7bit")


class ComposeError(MailgateError):
    """An outbox row cannot be made into a message (e.g. a header value that cannot be written)."""


@dataclass(frozen=True)
class Route:
    """Where an outbox row goes out: the server, the From address and name, and the X-Loop address."""

    server: OutgoingServer
    from_address: str
    from_name: str
    loop_address: str


def route_for(config: Config, message: OutboxMessage) -> Route | None:
    """The server and sender of a message (by its account), or None when no server is configured."""
    account = _account(config, message.account)
    server = config.outgoing.server(account.outgoing if account else None)
    if server is None:
        return None
    sender = (account.from_address or account.address if account else None) or server.from_address
    if not sender:
        raise ComposeError(f"no address to send from for account {message.account!r}")
    loop = (account.address if account else None) or sender
    return Route(server, sender, config.product_name, loop)


def _account(config: Config, name: str | None) -> AccountConfig | None:
    return next((a for a in config.accounts if a.name == name), None)


def compose(message: OutboxMessage, route: Route) -> EmailMessage:
    """The message to send: headers, a text/plain and a text/html part (multipart/alternative)."""
    try:
        return _compose(message, route)
    except (ValueError, TypeError, IndexError) as exc:
        raise ComposeError(f"message {message.id} cannot be composed: {exc}") from None


def _compose(message: OutboxMessage, route: Route) -> EmailMessage:
    mail = EmailMessage(policy=_POLICY)
    local, _, domain = route.from_address.rpartition("@")
    mail["From"] = Address(route.from_name, local, domain) if local else route.from_address
    mail["To"] = message.to_address
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(_utc(message.created_at))
    mail["Message-ID"] = f"<{message.message_id}>"
    in_reply_to = writable_ids([message.in_reply_to or ""])
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    references = writable_ids(message.references.split())
    if references:
        mail["References"] = references
    for name, value in sorted(_headers(message).items()):
        mail[name] = value
    mail["X-Loop"] = route.loop_address
    mail.set_content(message.body, subtype="plain", charset="utf-8", cte="quoted-printable")
    html = message.html_body or text_to_html(message.body)
    mail.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # a boundary from the Message-ID keeps every attempt's bytes the same ("=_" never occurs in
    # quoted-printable text, where "=" is always followed by two hex digits or a line end)
    mail.set_boundary("=_mailgate_" + hashlib.sha256(message.message_id.encode()).hexdigest()[:32])
    return mail


def writable_ids(ids: list[str]) -> str:
    """The ids that can stand in a 7-bit header as they are, each in angle brackets, space-separated.

    An id with a space, a control or a non-ASCII character (possible in a mail we answer) cannot be
    written without encoding it, which would break threading anyway: it is left out.
    """
    kept = []
    for raw in ids:
        bare = raw.strip().removeprefix("<").removesuffix(">")
        writable = bare.isascii() and bare.isprintable() and not any(c in bare for c in " <>")
        if bare and writable and len(bare) <= _LONGEST_ID:
            kept.append(f"<{bare}>")
    return " ".join(dict.fromkeys(kept))


def message_bytes(mail: EmailMessage) -> bytes:
    """The message as sent on the wire (CRLF line ends, 7-bit); ComposeError if it cannot be written."""
    try:
        return mail.as_bytes(policy=_POLICY)
    except (ValueError, TypeError, LookupError) as exc:
        raise ComposeError(f"message {mail['Message-ID']} cannot be written: {exc}") from None


def _headers(message: OutboxMessage) -> dict[str, str]:
    try:
        found = json.loads(message.headers_json or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

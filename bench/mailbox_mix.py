"""A fixed, seeded mailbox mix for the end-to-end benchmark, with the fixtures its tags refer to.

The mix (by seeded draw, so about these shares):

- 60 % plain new mails of 1-3 KB of text, from a pool of senders (some known, most not);
- 25 % replies from known people: ``RE: [CALL#n] ...`` naming an existing call of theirs, with
  In-Reply-To/References and the earlier mail quoted under an "On ... wrote:" line;
- 10 % new mails with one 50-200 KB attachment (random bytes, so base64 does not compress);
- 5 % HTML-only new mails (a single text/html part).

``fixtures_yaml`` describes the people, group and calls that the replies' tags hit. The same
``(count, seed)`` always gives the same bytes, so runs are comparable.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

CALLS = 1000
KNOWN_PEOPLE = 40
DESK = "helpdesk@example.com"
_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
_WORD_TEXT = (
    "printer laptop screen password account vpn network outlook invoice access drive folder "
    "error message restart update install license keyboard mouse phone meeting room badge "
    "server backup report quarter sales team office floor please urgent since yesterday morning "
    "again still cannot open login fails slow broken replaced request new old working shared"
)
_WORDS = tuple(_WORD_TEXT.split())
_SHARES = (("plain", 0.60), ("reply", 0.25), ("attachment", 0.10), ("html", 0.05))


@dataclass(frozen=True)
class MixMessage:
    """One message of the mix: its kind (plain, reply, attachment, html) and its raw bytes."""

    kind: str
    raw: bytes


def known_person(index: int) -> str:
    """The address of known person ``index`` (0-based) in the fixtures."""
    return f"person{index:03d}@example.com"


def fixtures_yaml(calls: int = CALLS) -> str:
    """Fixtures for ``mailgate db load``: a group, the known people, and ``calls`` open calls."""
    lines = ["groups: [{name: Desk}]", "people:"]
    lines += [
        f"  - {{email: {known_person(i)}, name: Person {i}, user: true, analyst: {str(i < 5).lower()}"
        + (", groups: [Desk]}" if i < 5 else "}")
        for i in range(KNOWN_PEOPLE)
    ]
    lines.append("calls:")
    lines += [
        f"  - {{number: {n}, status: open, user: {_call_user(n)}, assigned_analyst: {known_person(n % 5)}, "
        f"summary: Call {n} about the {_WORDS[n % len(_WORDS)]}}}"
        for n in range(1, calls + 1)
    ]
    return "\n".join(lines) + "\n"


def _call_user(number: int) -> str:
    return known_person(5 + number % (KNOWN_PEOPLE - 5))


def _kind(rng: random.Random) -> str:
    roll = rng.random()
    for kind, share in _SHARES:
        if roll < share:
            return kind
        roll -= share
    return _SHARES[-1][0]


def _text(rng: random.Random, size: int) -> str:
    """About ``size`` characters of sentence-like text in lines of at most 76 characters."""
    lines: list[str] = []
    line: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(_WORDS)
        if sum(len(w) + 1 for w in line) + len(word) > 72:
            lines.append(" ".join(line))
            line = []
        line.append(word)
        total += len(word) + 1
    lines.append(" ".join(line) + ".")
    return "\n".join(lines)


def _base(index: int, seed: int, sender: str, subject: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = DESK
    message["Subject"] = subject
    message["Date"] = format_datetime(_START + timedelta(seconds=37 * index))
    message["Message-ID"] = f"<mix-{seed}-{index}@example.com>"
    return message


def _new_sender(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return known_person(rng.randrange(KNOWN_PEOPLE))
    return f"Customer {rng.randrange(5000)} <customer{rng.randrange(5000)}@example.org>"


def _subject(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 7))).capitalize()


def _plain(rng: random.Random, index: int, seed: int) -> EmailMessage:
    message = _base(index, seed, _new_sender(rng), _subject(rng))
    message.set_content(f"Hello,\n\n{_text(rng, rng.randint(900, 2700))}\n\nRegards\n")
    return message


def _reply(rng: random.Random, index: int, seed: int, calls: int) -> EmailMessage:
    number = rng.randint(1, calls)
    sender = _call_user(number)
    message = _base(index, seed, sender, f"RE: [CALL#{number}] Call {number} has been updated")
    earlier = f"<mailgate.{rng.getrandbits(64):016x}@mailgate.invalid>"
    message["In-Reply-To"] = earlier
    message["References"] = earlier
    quoted = "\n".join(f"> {line}" for line in _text(rng, rng.randint(300, 1200)).splitlines())
    when = format_datetime(_START - timedelta(hours=rng.randint(1, 500)))
    message.set_content(
        f"{_text(rng, rng.randint(200, 900))}\n\nThanks\n\nOn {when}, Desk <{DESK}> wrote:\n{quoted}\n"
    )
    return message


def _attachment(rng: random.Random, index: int, seed: int) -> EmailMessage:
    message = _plain(rng, index, seed)
    data = rng.randbytes(rng.randint(50_000, 200_000))
    message.add_attachment(data, maintype="application", subtype="pdf", filename=f"report-{index}.pdf")
    return message


def _html(rng: random.Random, index: int, seed: int) -> EmailMessage:
    message = _base(index, seed, _new_sender(rng), _subject(rng))
    paragraphs = "".join(
        f'<p style="margin:0 0 8px">{_text(rng, rng.randint(200, 600))}</p>' for _ in range(rng.randint(2, 4))
    )
    html = f"<html><body><div><b>Hello</b>,</div>{paragraphs}<div>Regards</div></body></html>"
    message.set_content(html, subtype="html")
    return message


def mailbox_mix(count: int, seed: int = 3, calls: int = CALLS) -> list[MixMessage]:
    """``count`` messages of the mix, in delivery order; the same arguments give the same bytes."""
    rng = random.Random(seed)
    out: list[MixMessage] = []
    for index in range(count):
        kind = _kind(rng)
        if kind == "plain":
            message = _plain(rng, index, seed)
        elif kind == "reply":
            message = _reply(rng, index, seed, calls)
        elif kind == "attachment":
            message = _attachment(rng, index, seed)
        else:
            message = _html(rng, index, seed)
        out.append(MixMessage(kind, message.as_bytes()))
    return out


def big_attachment_message(size: int, seed: int = 5) -> bytes:
    """A new mail carrying one attachment of ``size`` random bytes (base64 on the wire)."""
    rng = random.Random(seed)
    message = _base(0, seed, known_person(7), "Big file attached")
    message.set_content("Hello,\n\nthe file is attached.\n")
    message.add_attachment(rng.randbytes(size), maintype="application", subtype="zip", filename="big.zip")
    return message.as_bytes()


def describe(messages: list[MixMessage]) -> str:
    """A one-line summary of a mix: the count and bytes of each kind."""
    counts = Counter(m.kind for m in messages)
    sizes = Counter[str]()
    for m in messages:
        sizes[m.kind] += len(m.raw)
    parts = [f"{kind} {counts[kind]} ({sizes[kind] / 1e6:.1f} MB)" for kind, _ in _SHARES]
    total = sum(sizes.values())
    return f"{len(messages)} messages, {total / 1e6:.1f} MB: " + ", ".join(parts)

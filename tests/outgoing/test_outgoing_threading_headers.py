"""Message-ID, In-Reply-To and References are written as ids, never RFC 2047-encoded (RFC 5322 3.6.4)."""

from __future__ import annotations

import re

from outgoing_desk import DESK_ADDRESS, MakeDesk, StartServer, plain_server

from engine.mail.message import parse_message
from engine.outgoing.compose import fold_message_ids, writable_ids

# Outlook's ids are about 85 characters; this one is 250, as some gateways write them
LONG_ID = ("AM0PR" + "07MB6418D2F1A9C3E5B7" * 12)[:225] + "@EURP190.PROD.OUTLOOK.COM"
assert len(LONG_ID) == 250


def _incoming(message_id: str, references: str = "") -> bytes:
    """A customer's mail written byte by byte (the stdlib's writer would encode a long id)."""
    lines = [
        "From: Ada <ada@example.com>",
        f"To: {DESK_ADDRESS}",
        "Subject: Printer jams",
        "Date: Mon, 02 Mar 2026 09:30:00 +0000",
        f"Message-ID: <{message_id}>",
        *([f"References: {references}"] if references else []),
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello, please help.",
        "",
    ]
    return "\r\n".join(lines).encode()


def _header_lines(data: bytes, name: str) -> list[str]:
    """The physical lines of one header field as they stand on the wire."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found: list[str] = []
    for line in head.split("\r\n"):
        if line.lower().startswith(name.lower() + ":") or (found and line[:1] in (" ", "\t")):
            found.append(line)
        elif found:
            break
    return found


def test_a_reply_to_a_250_character_message_id_carries_it_unencoded_on_the_wire(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver_raw(_incoming(LONG_ID, references="<first@mail.example> <second@mail.example>"))

    desk.drain()

    [arrival] = server.handler.arrived
    in_reply_to = _header_lines(arrival.data, "In-Reply-To")
    assert in_reply_to == [f"In-Reply-To: <{LONG_ID}>"]
    references = _header_lines(arrival.data, "References")
    assert "".join(references) == f"References: <first@mail.example> <second@mail.example> <{LONG_ID}>"
    assert all(len(line) <= 998 for line in references)
    for line in in_reply_to + references:
        assert "=?" not in line
    reread = parse_message(arrival.data)
    assert reread.in_reply_to == (LONG_ID,)
    assert reread.references == ("first@mail.example", "second@mail.example", LONG_ID)


def test_message_id_headers_are_folded_only_between_ids() -> None:
    ids = " ".join(f"<{n}{'x' * 30}@mail.example>" for n in range(6))

    folded = fold_message_ids("References", ids)

    lines = folded.removesuffix("\r\n").split("\r\n")
    assert len(lines) > 1
    assert all(re.fullmatch(r"(References:| )( <[^<> ]+>)+|\s<[^<> ]+>( <[^<> ]+>)*", line) for line in lines)
    assert "".join(lines).replace("References:", "").split() == ids.split()


def test_an_id_that_cannot_be_written_unencoded_is_left_out_of_the_threading_headers() -> None:
    assert writable_ids(
        ["<ok@mail.example>", "<bäd@mail.example>", "<has space@x>", "<" + "a" * 990 + ">"]
    ) == ("<ok@mail.example>")
    assert writable_ids(["plain@mail.example", "<plain@mail.example>"]) == "<plain@mail.example>"


def test_an_rfc2047_encoded_in_reply_to_from_an_older_reply_is_read_as_its_id() -> None:
    raw = (
        "From: ada@example.com\r\nTo: helpdesk@example.com\r\nSubject: Re: x\r\n"
        "Message-ID: <answer@mail.example>\r\n"
        f"In-Reply-To: =?utf-8?q?=3C{LONG_ID[:60]}?=\r\n =?utf-8?q?{LONG_ID[60:]}=3E?=\r\n"
        "\r\nthanks\r\n"
    ).encode()

    assert parse_message(raw).in_reply_to == (LONG_ID,)

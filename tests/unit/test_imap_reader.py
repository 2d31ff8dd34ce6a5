"""The linear-time IMAP reply reader gives what aioimaplib's own reader gives, however the bytes arrive."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aioimaplib.aioimaplib import SELECTED, FetchCommand, IMAP4ClientProtocol, Response

from connectors.imap.reader import CountingFetchCommand, read_responses


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _LinearProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    def data_received(self, d: bytes) -> None:
        read_responses(self, d)


def _fetch_reply(tag: str, rng: random.Random) -> bytes:
    parts = [b"* 3 EXISTS\r\n"]
    for n in range(1, 40):
        size = rng.choice([0, 1, 5, 300, 4000, 70000])
        body = bytes(rng.choice(b"ab()\r\n {}*") for _ in range(size))
        head = b"* %d FETCH (UID %d FLAGS (\\Seen) BODY[] {%d}\r\n" % (n, 100 + n, size)
        parts.append(head + body + b")\r\n")
        if n % 7 == 0:
            parts.append(b"* %d FETCH (FLAGS (\\Deleted))\r\n" % n)
    parts.append(tag.encode() + b" OK UID FETCH completed\r\n")
    return b"".join(parts)


def _chunks(data: bytes, how: str, rng: random.Random) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    chunks, position = [], 0
    while position < len(data):
        step = rng.choice([1, 2, 3, 17, 1000, 65536])
        chunks.append(data[position : position + step])
        position += step
    return chunks


async def _run(protocol_class: type[IMAP4ClientProtocol], command_class: type[FetchCommand], how: str) -> Any:
    loop = asyncio.get_running_loop()
    protocol = protocol_class(loop, None)
    protocol.transport = _Transport()
    protocol.state = SELECTED
    tag = protocol.new_tag()
    command = command_class(tag, "1:*", "BODY.PEEK[]", prefix="UID", loop=loop, timeout=None)
    pending = asyncio.ensure_future(protocol.execute(command))
    await asyncio.sleep(0)
    rng = random.Random(7)
    for chunk in _chunks(_fetch_reply(tag, rng), how, random.Random(how)):
        protocol.data_received(chunk)
    response: Response = await asyncio.wait_for(pending, 5)
    return response.result, [bytes(line) if isinstance(line, bytearray) else line for line in response.lines]


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
def test_linear_reader_gives_the_same_fetch_reply_as_aioimaplib(how: str) -> None:
    expected = asyncio.run(_run(IMAP4ClientProtocol, FetchCommand, how))
    assert asyncio.run(_run(_LinearProtocol, CountingFetchCommand, how)) == expected
    result, lines = expected
    assert result == "OK" and sum(isinstance(line, bytes) and b"BODY[]" in line for line in lines) == 39


def test_counting_fetch_waits_while_a_parenthesis_is_open() -> None:
    async def check() -> None:
        command = CountingFetchCommand("A1", "1", "BODY[]", loop=asyncio.get_running_loop())
        command.append_to_resp(b"1 FETCH (UID 5 BODY[] {3}")
        assert command.wait_data()
        command.append_to_resp(bytearray(b"abc"))
        assert command.wait_data()
        command.append_to_resp(b")")
        assert not command.wait_data()

    asyncio.run(check())

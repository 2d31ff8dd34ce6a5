"""A stored trace is spliced: a shared list deflated once, the message's own JSON stored as it is."""

from __future__ import annotations

import random
import zlib

from engine.rules.trace_form import deflated_segment, spliced_zlib


def _text(rng: random.Random, size: int) -> bytes:
    words = ["rule", '"matched": true', "sender.known", "{", "}", ", ", "é", "当", "\\n", "close_call"]
    return "".join(rng.choice(words) for _ in range(size)).encode()


def test_a_spliced_trace_is_a_zlib_stream_that_plain_zlib_reads_back_whole() -> None:
    rng = random.Random(7)
    for before_size, shared_size, after_size in [
        (0, 0, 0),
        (1, 1, 1),
        (40, 900, 12),
        (30_000, 50_000, 70_000),
    ]:
        before, shared, after = (_text(rng, n) for n in (before_size, shared_size, after_size))
        stored = spliced_zlib(before, shared, deflated_segment(shared), after)
        assert zlib.decompress(stored) == before + shared + after


def test_the_shared_segment_is_reused_as_it_is_and_stays_compressed() -> None:
    shared = b'{"rule": "update_call", "matched": false, "why": "subject.intent is not update_call"}, ' * 40
    segment = deflated_segment(shared)
    first = spliced_zlib(b'{"a": 1, "rules_tried": [', shared, segment, b'], "b": 2}')
    second = spliced_zlib(b'{"a": 2, "rules_tried": [', shared, segment, b'], "b": 3}')
    assert segment in first and segment in second
    assert len(first) < len(shared) // 4

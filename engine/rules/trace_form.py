"""The form a decision trace is stored in: the zlib format, made without compressing each time.

Most of a trace is its rules tried (about two thirds of the JSON), and a pack has few distinct
lists of them (one per shared choice, ``RulePack.choose``). So each list is deflated once per
process, as a segment that ends on a full flush (byte-aligned, referring to nothing before it),
and a message's trace is spliced together: the zlib header, the message's own JSON before the
list as a stored (uncompressed) block, the list's deflated segment, the JSON after it as the final
stored block, and the Adler-32 of the whole text. ``zlib.decompress`` reads it back as the JSON
text, like any zlib stream; no compressor runs per message (ISA-L's took about 30 µs a message).
"""

from __future__ import annotations

import zlib

_HEADER = b"\x78\x01"  # deflate, 32 KB window, fastest: (0x7801 % 31 == 0)
_STORED_MAX = 0xFFFF


def deflated_segment(text: bytes) -> bytes:
    """``text`` as raw deflate blocks ending on a full flush, to be spliced into a stream."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH)


def _stored(data: bytes, final: bool) -> bytes:
    """``data`` as stored deflate blocks (from a byte boundary); the last one final if asked."""
    blocks = []
    for start in range(0, max(len(data), 1), _STORED_MAX):
        part = data[start : start + _STORED_MAX]
        last = final and start + _STORED_MAX >= len(data)
        size = len(part)
        blocks.append(bytes((1 if last else 0, size & 0xFF, size >> 8, ~size & 0xFF, (~size >> 8) & 0xFF)))
        blocks.append(part)
    return b"".join(blocks)


def spliced_zlib(before: bytes, shared: bytes, shared_segment: bytes, after: bytes) -> bytes:
    """The zlib stream of ``before + shared + after``, ``shared`` given as its ``deflated_segment``."""
    checksum = zlib.adler32(after, zlib.adler32(shared, zlib.adler32(before)))
    return b"".join(
        (_HEADER, _stored(before, False), shared_segment, _stored(after, True), checksum.to_bytes(4, "big"))
    )

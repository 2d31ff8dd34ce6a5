"""Charsets beyond the codecs' labels: ISO-2022-JP as Japanese mailers write it, and detection.

Japanese mailers (Outlook among them) send the NEC and IBM extensions of CP50220/50221 (NEC row
13 such as ①, ㈱, ㍻) under the plain ``iso-2022-jp`` label, and Python's ``iso2022_jp`` codec
refuses a whole text for one such character. Here each two-byte JIS X 0208 code is moved to
Shift_JIS arithmetically and decoded with ``cp932``, which holds those extensions; a code no table
knows costs that one character (U+FFFD), never the rest of the text.

8-bit text without a usable label (none, ``x-unknown``, or a label its bytes do not fit) is given
to charset-normalizer, choosing among the charsets such mail is really written in.
"""

from __future__ import annotations

import codecs

ISO_2022_JP_LABELS = frozenset(
    {
        "iso-2022-jp",
        "iso2022_jp",
        "iso2022jp",
        "csiso2022jp",
        "iso-2022-jp-1",
        "iso-2022-jp-2",
        "iso-2022-jp-ext",
    }
)

_ESC = 0x1B
_ASCII, _ROMAN, _KATAKANA, _KANJI = "ascii", "roman", "katakana", "kanji"
_DESIGNATIONS = {  # escape sequence after ESC -> the character set it switches to
    b"(B": _ASCII,
    b"(J": _ROMAN,
    b"(H": _ROMAN,
    b"(I": _KATAKANA,
    b"$@": _KANJI,
    b"$B": _KANJI,
    b"&@\x1b$B": _KANJI,  # JIS X 0208-1990's announcer, then ESC $ B
    b"$(D": _KANJI,  # JIS X 0212 (rare): read as JIS X 0208, a wrong code costs one character
    b"$(O": _KANJI,
    b"$(Q": _KANJI,
}
_CP932 = codecs.getdecoder("cp932")


def _jis_to_sjis(first: int, second: int) -> bytes:
    """The Shift_JIS bytes of one JIS X 0208 code (both bytes 0x21..0x7E)."""
    row = first - 0x21
    lead = 0x81 + row // 2
    if lead > 0x9F:
        lead += 0x40
    trail = second + 0x7E if row % 2 else second + 0x1F + (1 if second >= 0x60 else 0)
    return bytes((lead, trail))


def decode_iso2022_jp(data: bytes) -> tuple[str, int]:
    """Decode ISO-2022-JP with the CP50221 extensions; returns the text and how many codes were unknown."""
    out: list[str] = []
    mode = _ASCII
    bad = 0
    i, end = 0, len(data)
    while i < end:
        byte = data[i]
        if byte == _ESC:
            for sequence, charset in _DESIGNATIONS.items():
                if data.startswith(sequence, i + 1):
                    mode = charset
                    i += 1 + len(sequence)
                    break
            else:  # an escape sequence we do not know: drop the ESC alone
                i += 1
                bad += 1
            continue
        if byte in (0x0A, 0x0D):  # a line end returns to ASCII (RFC 1468)
            out.append(chr(byte))
            mode = _ASCII
            i += 1
            continue
        if mode == _KANJI and 0x21 <= byte <= 0x7E and i + 1 < end and 0x21 <= data[i + 1] <= 0x7E:
            try:
                out.append(_CP932(_jis_to_sjis(byte, data[i + 1]))[0])
            except UnicodeDecodeError:
                out.append("\ufffd")
                bad += 1
            i += 2
            continue
        if mode == _KATAKANA and 0x21 <= byte <= 0x5F:
            out.append(chr(0xFF61 + byte - 0x21))  # half-width katakana
        elif byte == 0x0E or byte == 0x0F:  # SO/SI of CP50222: shifts, no character
            pass
        elif byte < 0x80:
            out.append(chr(byte))
        else:  # 8-bit bytes have no place in ISO-2022-JP
            out.append("\ufffd")
            bad += 1
        i += 1
    return "".join(out), bad


# The charsets undeclared or mislabelled 8-bit mail is really written in, for the detector to choose
# from: the single-byte Windows pages and the East Asian multibyte ones. Leaving out the exotic
# pages keeps short Western text from being read as, say, Urdu (cp1006).
_DETECTABLE = (
    "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp874",
    "koi8_r", "koi8_u", "gb18030", "big5", "cp932", "euc_jp", "cp949",
)  # fmt: skip
_DETECT_AT_MOST = 64 * 1024  # the detector reads a sample; a longer text is decoded whole in its choice


def detect_charset(data: bytes) -> tuple[str, str] | None:
    """The text and charset charset-normalizer finds for 8-bit bytes without a usable label, or None."""
    from charset_normalizer import from_bytes  # imported on the rare path only (about 30 ms)

    best = from_bytes(data[:_DETECT_AT_MOST], cp_isolation=list(_DETECTABLE)).best()
    if best is None:
        return None
    try:
        text = data.decode(best.encoding)
    except (LookupError, UnicodeError):
        return None
    try:  # a Western text reads the same in several Windows pages: name the usual one
        if data.decode("cp1252") == text:
            return text, "cp1252"
    except UnicodeError:
        pass
    return text, f"{best.encoding} (detected)"

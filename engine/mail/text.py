"""Text helpers for reading mail: transfer decoding, charsets, RFC 2047 words, format=flowed.

HTML bodies are turned into text in ``engine.mail.html_text``.

Every function here is total: broken input is decoded as well as possible and the defect is
returned as a human-readable problem string instead of raising.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata

from engine.mail.charsets import ISO_2022_JP_LABELS, decode_iso2022_jp, detect_charset

# Labels that mail software uses for a superset encoding; decoding with the superset is never worse.
_CHARSET_SUPERSETS = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "ansi_x3.4-1968": "utf-8",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NOT_ALPHABET = bytes(b for b in range(256) if b not in _B64_ALPHABET)
_B64_ACCEPTED = _B64_ALPHABET + b"=\r\n\t "
_BAD_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*\r?\n|[ \t]*\Z)")
_IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary", "none", "7-bit", "8-bit", "8bits", "7bits"})
_QP_NAMES = frozenset({"quoted-printable", "quoted printable", "quoted_printable", "quotedprintable", "qp"})
_UU_NAMES = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")


def transfer_encoding_name(encoding: str) -> str:
    """A Content-Transfer-Encoding header's value as a plain lower-case name (quotes and spaces off)."""
    return encoding.strip().strip("\"'").lower()


def decode_transfer(raw: bytes, encoding: str) -> tuple[bytes, str | None]:
    """Undo a Content-Transfer-Encoding, leniently; returns the bytes and a problem if it was broken."""
    name = transfer_encoding_name(encoding)
    if name == "base64":
        return decode_base64(raw)
    if name in _QP_NAMES:
        problem = "malformed quoted-printable sequences kept as they were" if _BAD_QP.search(raw) else None
        if name != "quoted-printable":
            problem = f"Content-Transfer-Encoding {encoding.strip()!r} read as quoted-printable"
        return binascii.a2b_qp(raw), problem
    if name in _UU_NAMES:
        return decode_uu(raw)
    if name in _IDENTITY_ENCODINGS:
        return raw, None
    return raw, f"unknown Content-Transfer-Encoding {encoding.strip()!r}, content used as it was"


def decode_uu(raw: bytes) -> tuple[bytes, str | None]:
    """Decode uuencoded data between its begin and end lines; without a begin line it is kept as it was."""
    lines = iter(raw.splitlines())
    for line in lines:
        if re.match(rb"begin [0-7]{3,4} ", line):
            break
    else:
        return raw, "uuencoded content without a begin line kept as it was"
    decoded: list[bytes] = []
    for line in lines:
        if line.strip() in (b"end", b"`", b""):
            if line.strip() == b"end":
                break
            continue
        try:
            decoded.append(binascii.a2b_uu(line))
        except binascii.Error:
            length = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                decoded.append(binascii.a2b_uu(line[:length]))
            except binascii.Error:
                return b"".join(decoded), "broken uuencoded data, decoded what was possible"
    return b"".join(decoded), None


def decode_base64(raw: bytes) -> tuple[bytes, str | None]:
    """Decode base64, ignoring stray characters and repairing a broken ending."""
    stray = bool(raw.translate(None, _B64_ACCEPTED))
    try:
        data = binascii.a2b_base64(raw)
    except binascii.Error:
        clean = raw.split(b"=", 1)[0].translate(None, _B64_NOT_ALPHABET)
        extra = len(clean) % 4
        if extra == 1:
            clean = clean[:-1]
        elif extra:
            clean += b"=" * (4 - extra)
        return binascii.a2b_base64(clean), "broken base64 data, decoded what was possible"
    if stray:
        return data, "invalid characters in base64 data were ignored"
    return data, None


def decode_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode bytes in the declared charset; unknown or wrong charsets fall back to utf-8, then cp1252."""
    label = (charset or "").strip().strip("\"'").lower()
    declared = label or "us-ascii"
    codec = _CHARSET_SUPERSETS.get(declared, declared)
    try:
        codecs.lookup(codec)
        text = data.decode(codec)
        if len(text) == len(data) and codec != "utf-8":
            # a single-byte label decodes any bytes, so UTF-8 sent under it never fails: it is told
            # by being valid UTF-8, which 8-bit text in such a charset practically never is
            utf8 = _as_utf8_text(data)
            if utf8 is not None:
                return utf8, f"text declared {declared} is UTF-8, decoded as utf-8"
        return text, None
    except LookupError:
        text, used = _guess_decode(data)
        return text, f"unknown charset {label.upper()}, decoded as {used}"
    except (UnicodeError, ValueError, TypeError):
        pass
    if declared in ISO_2022_JP_LABELS:  # vendor extensions: one odd character costs that character
        text, unknown = decode_iso2022_jp(data)
        return text, (f"{unknown} characters of {label.upper()} could not be decoded" if unknown else None)
    text, used = _guess_decode(data, exclude=codec)
    return text, f"text is not valid {declared}, decoded as {used}"


def _as_utf8_text(data: bytes) -> str | None:
    """8-bit bytes read as UTF-8 if they are valid UTF-8 (None for plain ASCII, which every label
    reads alike, and for bytes that are not UTF-8)."""
    if data.isascii():
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _guess_decode(data: bytes, exclude: str = "", hint: str | None = None) -> tuple[str, str]:
    hinted = _CHARSET_SUPERSETS.get(hint.lower(), hint.lower()) if hint else None
    for codec in ("utf-8", hinted):
        if codec is None or codec == exclude:
            continue
        try:
            return data.decode(codec), codec
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
    mostly_utf8 = data.decode("utf-8", "replace")
    replaced = mostly_utf8.count("\ufffd")
    valid_multibyte = len(mostly_utf8) - len(mostly_utf8.encode("ascii", "ignore")) - replaced
    if valid_multibyte >= 4 * replaced:  # mostly valid utf-8 with a few damaged sequences
        return mostly_utf8, f"utf-8 ({replaced} undecodable bytes replaced)"
    detected = detect_charset(data)
    if detected is not None:
        return detected
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def fix_escaped_bytes(value: str, hint: str | None = None) -> str:
    """Turn raw 8-bit bytes the parser kept as surrogate escapes into text (utf-8, the hint, else cp1252)."""
    if not _LONE_SURROGATES.search(value):
        return value
    if _ESCAPED_BYTES.search(value):
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            pass
        else:
            return _guess_decode(raw, hint=hint)[0]
    return _LONE_SURROGATES.sub("\ufffd", value)


def clean_line(value: str) -> str:
    """Unfold a header value and drop control characters; the result is one stripped line."""
    value = re.sub(r"\r?\n|\r", "", value).replace("\t", " ")
    return _CONTROL_CHARS.sub("", value).strip()


def decode_header_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words, joining adjacent words of one charset before decoding them."""
    problems: list[str] = []
    out: list[str] = []
    run_charset: str | None = None
    run_bytes = b""
    pos = 0

    def flush() -> None:
        nonlocal run_charset, run_bytes
        if run_charset is not None:
            text, problem = decode_text(run_bytes, run_charset)
            out.append(text)
            if problem:
                problems.append(problem)
        run_charset, run_bytes = None, b""

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        if run_charset is None or between.strip() or charset != run_charset:
            flush()
            if between.strip() or not out:
                out.append(between)
        payload = match.group(3).encode("ascii", "replace")
        if match.group(2) in "bB":
            data, problem = decode_base64(payload)
            if problem:
                problems.append(f"encoded word: {problem}")
        else:
            data = binascii.a2b_qp(payload, header=True)
        run_charset = charset
        run_bytes += data
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out), problems


def unflow(text: str, delsp: bool) -> str:
    """Join the soft line breaks of RFC 3676 format=flowed text (quote depth is kept)."""
    lines: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if pending is not None and depth == pending_depth:
            pending += content
        else:
            if pending is not None:
                lines.append(_quoted(pending, pending_depth))
            pending, pending_depth = content, depth
        if not flowed:
            lines.append(_quoted(pending, pending_depth))
            pending = None
    if pending is not None:
        lines.append(_quoted(pending, pending_depth))
    return "\n".join(lines)


def _quoted(content: str, depth: int) -> str:
    return ("> " * depth) + content if depth else content


def normalise_body(text: str) -> str:
    """Line endings to \\n, no control characters, no trailing whitespace, no blank lines around."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_CHARS.sub("", fix_escaped_bytes(text))
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


_HEADER_FIELD = re.compile(rb"[!-9;-~]+:")
_OBSOLETE_HEADER_FIELD = re.compile(rb"([!-9;-~]+)[ \t]+:")


def _is_field_line(line: bytes) -> bool:
    return bool(_HEADER_FIELD.match(line) or _OBSOLETE_HEADER_FIELD.match(line))


def repair_header_block(data: bytes, header_size: int) -> tuple[bytes, list[str]]:
    """Repair what stops Python's parser early: 'Name : value' lines and a stray line between headers."""
    lines = data[:header_size].splitlines(keepends=True)
    fixed: list[bytes] = []
    problems: list[str] = []
    # a stray line is kept as a continuation when a header field follows it: found once, from the
    # end, not by reading the rest of the block for every stray line (quadratic: 32,000 took 400 s)
    fields = (i for i in reversed(range(len(lines))) if _is_field_line(lines[i]))
    last_field = next(fields, -1)
    for index, line in enumerate(lines):
        obsolete = _OBSOLETE_HEADER_FIELD.match(line)
        if not obsolete and (
            (index == 0 and line.startswith(b"From ")) or _HEADER_FIELD.match(line) or line[:1] in b" \t"
        ):
            fixed.append(line)
            continue
        if obsolete:
            fixed.append(obsolete.group(1) + b":" + line[obsolete.end() :])
            problems.append("obsolete header syntax (space before the colon) repaired")
        elif 0 < index < last_field:
            fixed.append(b" " + line)
            problems.append(f"stray line in the header block kept as a continuation: {line[:60]!r}")
        else:
            fixed.extend(lines[index:])
            break
    if not problems:
        return data, problems  # nothing repaired: no copy of a big message's body
    return b"".join(fixed) + data[header_size:], problems


_UNSAFE_FILENAME_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)


def sanitize_filename(name: str | None, index: int) -> str:
    """A safe base name: no folders, no '..', no control characters, at most 200 characters, never empty."""
    fallback = f"attachment-{index}.bin"
    if not name:
        return fallback
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME_CHARS.sub("_", name)
    name = re.sub(r"\.{2,}", ".", re.sub(r"\s+", " ", name)).strip(" .")
    if not name or not name.strip("_"):
        return fallback
    stem, dot, ext = name.rpartition(".")
    if (stem or name).lower() in _WINDOWS_RESERVED:
        name = f"_{name}"
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 20:
            name = stem[: 200 - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:200].rstrip(" .")
    return name or fallback

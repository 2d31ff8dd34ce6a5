"""The person's own words in a reply: quoted copies, quote headers and signatures taken out.

A reply may put its new text above the quoted mail (top-posting), below it (bottom-posting) or
between quoted lines (interleaved). The text is read line by line:

- a line quoted with ``>`` is a copy of earlier mail and goes, with the quote header that
  introduces it (``On … wrote:``, ``Am … schrieb …:``, ``W dniu … napisał:``, a date-first
  ``30.09.2017, 18.30, "John Doe" <…>:`` …), wherever it stands; the person's lines around it stay;
- an unquoted copy, as Outlook writes it below a ``From:/Sent:/To:/Subject:`` block (in any of the
  desk's languages) or a ``-----Original Message-----`` line, runs to the end of the mail: the
  block and all below it go;
- a signature (``-- `` up to the next quoted part) and a mobile client's ``Sent from my …`` line
  (short, naming a device or mail program, ending its paragraph) go.

When unsure, more is kept, never less: a quote header that introduces neither a quoted block nor an
Outlook copy stays, and a mail that would come out empty is kept whole. (mail-parser-reply, used
before, keeps only the text above the first quote header, so bottom-posted and interleaved words
were lost; its model has no place for them.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

# Verbs of the "<someone> wrote:" line in the desk's languages (en de fr es it nl pt sv da no fi pl
# cs ru uk ja zh ko tr), as Gmail, Apple Mail, Thunderbird, Outlook for Mac, K-9, iOS, Android,
# Yahoo, Roundcube and Zimbra write it.
_WROTE_VERBS = (
    "wrote", "writes", "schrieb", "a écrit", "a ecrit", "escribió", "escribio", "ha scritto", "schreef",
    "escreveu", "skrev", "kirjoitti", "napisał", "napisała", "napisał\\(a\\)", "napisal", "napsal",
    "napsala", "napsal\\(a\\)", "написал", "написала", "написал\\(а\\)", "написав", "написала",
    "пише", "пишет", "写道", "寫道", "書きました", "のメッセージ", "작성", "yazdı", "şunu yazdı",
)  # fmt: skip
_WROTE_LINE = re.compile(
    r"(?:" + "|".join(_WROTE_VERBS) + r")[^\n]{0,80}?[:：]\s*$",
    re.IGNORECASE,
)
# The first field of Outlook's header block ("From:"), then the others, in the desk's languages.
_FROM_FIELDS = (
    "from", "von", "de", "da", "van", "från", "fra", "lähettäjä", "od", "от", "від", "差出人",
    "发件人", "寄件者", "보낸 사람", "보낸사람", "kimden",
)  # fmt: skip
_OTHER_FIELDS = (
    "sent", "to", "subject", "date", "cc", "gesendet", "an", "betreff", "datum", "envoyé", "envoye",
    "à", "a", "objet", "enviado", "enviada", "para", "asunto", "fecha", "inviato", "oggetto", "data",
    "verzonden", "aan", "onderwerp", "assunto", "skickat", "till", "ämne", "kopia", "sendt", "til",
    "emne", "dato", "kopi", "lähetetty", "vastaanottaja", "aihe", "päivämäärä", "kopio", "wysłano",
    "do", "temat", "dw", "odesláno", "komu", "předmět", "kopie", "отправлено", "кому", "тема",
    "дата", "копия", "надіслано", "копія", "送信日時", "宛先", "件名", "日付", "发送时间", "收件人",
    "主题", "日期", "抄送", "寄件日期", "收件者", "主旨", "副本", "보낸 날짜", "받는 사람", "제목",
    "참조", "gönderildi", "gönderilme", "kime", "konu", "tarih", "bilgi", "organization",
)  # fmt: skip
_FIELD = r"[ \t*]*(?:{names})[ \t*]*[:：]"
_FROM_FIELD = re.compile(_FIELD.format(names="|".join(map(re.escape, _FROM_FIELDS))), re.IGNORECASE)
_ANY_FIELD = re.compile(
    _FIELD.format(names="|".join(map(re.escape, _FROM_FIELDS + _OTHER_FIELDS))), re.IGNORECASE
)
# "-----Original Message-----" in any language, Gmail's "---------- Forwarded message ---------",
# and Outlook on the web's line of underscores before its header block.
_SEPARATOR = re.compile(r"^[ \t]*(?:-{3,}[^-\n]{3,60}-{3,}|_{20,})[ \t]*$")
# A date-first quote header with an address: 30.09.2017, 18.30, "John Doe" <john@example.com>:
_ADDRESSED_HEADER = re.compile(r"\d.*<[^<>\s@]+@[^<>\s]+>[^\n]{0,40}[:：]\s*$")
_QUOTED = re.compile(r"^[ \t]*>")
# what the first line of a wrapped quote header carries: a time, a year, a date or an address
_DATED = re.compile(r"\d{1,2}[:.h]\d{2}|\d{4}|\d{1,2}[./-]\d{1,2}|@")
# what names the writer of a quoted copy on a separator line: a "wrote" verb or an address
_WRITER = re.compile(r"@|" + "|".join(_WROTE_VERBS), re.IGNORECASE)
_SIGNATURE = re.compile(r"^--[ \t]?$")
# Mobile clients' lines, in the desk's languages
_SENT_FROM = re.compile(
    r"^[ \t]*(?:sent from my|sent from|get outlook for|gesendet von meinem|gesendet von|von meinem"
    r"|envoyé de mon|envoyé depuis|enviado desde mi|enviado do meu|enviado de meu|inviato da|"
    r"verzonden vanaf|verstuurd vanaf|verzonden met|skickat från|sendt fra|lähetetty|wysłane z"
    r"|odesláno z|отправлено с|надіслано з|iphoneから送信|从我的|從我的|내 .*에서 보냄|iphone'umdan"
    r"|android'imden|gönderildi)[^\n]{0,60}$",
    re.IGNORECASE,
)
# What such a line names: a device, a mobile app or a mail program (a line that names none, such as
# "Sent from home, the VPN fails", is the person's)
_DEVICE = re.compile(
    r"iphon|ipad|ipod|android|samsung|galaxy|blackberry|huawei|xiaomi|redmi|oneplus|pixel|nokia|"
    r"motorola|xperia|outlook|gmail|yahoo|aol|proton|tutanota|bluemail|airmail|k-9|\bmail\b|mobil|"
    r"móvil|movil|celular|cellulare|smartphone|handy|phone|téléphone|telefon|teléfono|telefoon|"
    r"puhelim|телефон|смартфон|мобильн|мобільн|tablet|手机|手機|携帯|에서 보냄",
    re.IGNORECASE,
)
_SENT_FROM_WORDS = 8  # "Sent from my Samsung Galaxy smartphone." is six; a sentence of the person's is longer
_BLANK_RUNS = re.compile(r"\n{3,}")


def new_text_of_reply(body: str, ours: Callable[[], Sequence[str]] | None = None) -> str:
    """The person's own text of a reply, wherever it stands; the body unchanged when unsure.

    ``ours``: asked (once, only when the reply holds an unquoted copy) for the text of the mails of
    ours it answers. In such a copy only their lines go; what the person typed inside it stays.
    """
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    i, end = 0, len(lines)
    while i < end:
        header = _quote_header_length(lines, i)
        if header:
            after = _next_text_line(lines, i + header)
            if after < end and _QUOTED.match(lines[after]):
                i = after  # the header introduces a quoted block: both go
                continue
            if _is_unquoted_copy_start(lines, i, header):
                # Outlook's copy below a header block or separator: the rest is the copy, but for
                # what the person typed into it ("answers in red"), where we know what we sent
                kept += _typed_into_copy(lines, i + header, ours() if ours is not None else ())
                break
        line = lines[i]
        if _QUOTED.match(line):
            i += 1
            continue
        if _SIGNATURE.match(line):
            i = _end_of_signature(lines, i)
            continue
        if not _is_sent_from_line(lines, i):
            kept.append(line)
        i += 1
    text = _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n")
    return text.rstrip() if text.strip() else body


def _typed_into_copy(lines: list[str], start: int, ours: Sequence[str]) -> list[str]:
    """The lines of an unquoted copy from ``start`` that are no text of ``ours`` (none without it).

    A line is ours when its words, spaces folded and case ignored, are a run of whole words of one
    of our mails (a mail program may wrap our lines anew). The copy's own header fields, quoted
    lines, and everything from an older copy's header down are not the person's either.
    """
    if not ours:
        return []
    known = " " + " ".join(" ".join(text.split()).casefold() for text in ours) + " "
    i = _next_text_line(lines, start)
    while i < len(lines) and _ANY_FIELD.match(lines[i]):  # Thunderbird's fields below its separator
        i += 1
    kept: list[str] = []
    for j in range(i, len(lines)):
        header = _quote_header_length(lines, j)
        if header and _is_unquoted_copy_start(lines, j, header):
            break  # an older mail, copied into ours
        words = " ".join(lines[j].split()).casefold()
        if not words:
            kept.append("")
        elif not _QUOTED.match(lines[j]) and f" {words} " not in known:
            kept.append(lines[j])
    return kept if any(line.strip() for line in kept) else []


def _quote_header_length(lines: list[str], i: int) -> int:
    """How many lines a quote header starting at line ``i`` spans (0 when none starts there)."""
    line = lines[i]
    if not line.strip() or _QUOTED.match(line):
        return 0
    if _SEPARATOR.match(line):
        return 1 + _field_block_length(lines, i + 1)
    block = _field_block_length(lines, i)
    if block:
        return block
    for span in (1, 2, 3):  # an attribution line may be wrapped over up to three lines
        if i + span > len(lines):
            break
        if span > 1 and not _wrapped(lines[i + span - 2]):
            break
        joined = " ".join(part.strip() for part in lines[i : i + span])
        if _WROTE_LINE.search(joined) or _ADDRESSED_HEADER.search(joined):
            return 0 if span > 1 and _starts_below(lines, i, span) else span
    return 0


def _starts_below(lines: list[str], i: int, span: int) -> bool:
    """Whether a header found over lines ``i..i+span`` really starts below line ``i``.

    So it does when the lines below are a whole quote header with its date or address (``On 1 Dec
    2025 … wrote:``) and line ``i`` has neither: it is the person's own line, written without a blank
    line before the header (a wrapped header's first line carries its date, time or address).
    """
    tail = " ".join(part.strip() for part in lines[i + 1 : i + span])
    whole = _WROTE_LINE.search(tail) or _ADDRESSED_HEADER.search(tail)
    return bool(whole and _DATED.search(tail) and not _DATED.search(lines[i]))


def _wrapped(line: str) -> bool:
    """Whether a line looks cut by a mailer's wrapping (long, no sentence end), not a line of its own."""
    stripped = line.strip()
    return len(stripped) >= 40 and not stripped.endswith((".", "!", "?", ",", ";"))


def _field_block_length(lines: list[str], i: int) -> int:
    """Lines in an Outlook header block at ``i`` (From, then at least one more field), else 0."""
    if i >= len(lines) or not _FROM_FIELD.match(lines[i]):
        return 0
    j = i + 1
    while j < len(lines) and (_ANY_FIELD.match(lines[j]) or (lines[j][:1] in " \t" and lines[j].strip())):
        j += 1
    return j - i if j - i >= 2 else 0


def _is_unquoted_copy_start(lines: list[str], i: int, header: int) -> bool:
    """Whether the header at ``i`` opens an unquoted copy: a field block, or a separator above one.

    A separator counts only above header fields (``-----Original Message-----`` then ``From:``, or
    two fields of any kind: Thunderbird's ``-------- Original Message --------`` then ``Subject:``)
    or naming its writer (Lotus Notes' ``-----Service Desk <…> wrote: -----``): a person's own
    ``--- Error log ---`` or line of underscores is followed by their words.
    """
    if not _SEPARATOR.match(lines[i]):
        return _field_block_length(lines, i) == header
    after = _next_text_line(lines, i + 1)
    fields = after
    while fields < len(lines) and _ANY_FIELD.match(lines[fields]):
        fields += 1
    from_field = after < len(lines) and bool(_FROM_FIELD.match(lines[after]))
    return from_field or fields - after >= 2 or bool(_WRITER.search(lines[i]))


def _is_sent_from_line(lines: list[str], i: int) -> bool:
    """Whether line ``i`` is a mobile client's ``Sent from my iPhone``: short, naming a device, alone."""
    line = lines[i]
    if not (_SENT_FROM.match(line) and _DEVICE.search(line) and len(line.split()) <= _SENT_FROM_WORDS):
        return False
    following = i + 1
    return (
        following >= len(lines)
        or not lines[following].strip()
        or bool(_QUOTED.match(lines[following]) or _SIGNATURE.match(lines[following]))
        or bool(_quote_header_length(lines, following))
    )


def _next_text_line(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _end_of_signature(lines: list[str], i: int) -> int:
    """The line after a signature starting at ``i``: the next quoted part or header, else the end."""
    j = i + 1
    while j < len(lines) and not (_QUOTED.match(lines[j]) or _quote_header_length(lines, j)):
        j += 1
    return j

"""The Authentication-Results our own boundary added (RFC 8601, RFC 8617), and no others.

Anyone can write an Authentication-Results header into a mail. One counts only if

- its authserv-id is one of the account's ``trusted_authserv_ids``, and
- it stands above every Received header written by a host we do not trust: reading from the top
  (the last hop) down, the first Received header whose ``by`` host is neither a trusted
  authserv-id nor a trusted relay ends the part of the header that our own servers wrote.

For each method (dmarc, dkim, arc, ...) the results of the topmost counted header that has the
method decide: our boundary adds its results above whatever the sender wrote. An
ARC-Authentication-Results header of a trusted authserv-id counts like an Authentication-Results
header (it is the same server's verdict, sealed). Headers are parsed with ``authres``; only
headers whose authserv-id is trusted are parsed whole.

Contract: ``read_boundary_results`` never raises for what a message contains; what it ignored and
why is listed in ``BoundaryResults.ignored`` (the evidence ``explain`` shows).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import authres
import authres.arc
import authres.core
import authres.dmarc

from engine.config.authentication import AuthenticationSettings

MAX_TRACE_HEADERS = 200  # a longer trace is read only this far: the rest is ignored
MAX_PARSED_RESULTS = 10  # trusted (ARC-)Authentication-Results headers parsed per message at most


class _ResultsHeader(authres.core.AuthenticationResultsHeader):  # type: ignore[misc]
    """authres's parser with a faster lexer: the grammar and the results are authres's.

    authres compiles its patterns on every use (its own TODO says so) and reads white space and
    comments one pattern at a time; here each pattern is compiled once and CFWS (RFC 5322 folding
    white space and comments, which authres discards) is skipped by scanning the text. Plugged in
    through authres's own extension point (a feature module providing ``AuthenticationResultsHeader``).
    """

    _compiled: dict[Any, Any] = {}  # noqa: RUF012 - a cache shared by every instance
    _parse_text: str  # what is left to parse (authres's own attribute)

    def _parse_pattern(self, pattern: Any) -> Any:
        regexp = self._compiled.get(pattern)
        if regexp is None:
            regexp = pattern if authres.core.isre(pattern) else re.compile(r"^" + pattern, re.I)
            self._compiled[pattern] = regexp
        found = regexp.match(self._parse_text)
        if found is not None:
            self._parse_text = self._parse_text[found.end() :]
        return found

    def _parse_rfc5322_cfws(self) -> bool:
        text = self._parse_text
        start = len(text)
        while True:
            text = text.lstrip(" \t\r\n")
            if not text.startswith("("):
                break
            text = text[_comment_end(text) :]
        self._parse_text = text
        return len(text) != start

    def _parse_rfc5322_comment(self) -> bool | None:
        if not self._parse_text.startswith("("):
            return None
        self._parse_text = self._parse_text[_comment_end(self._parse_text) :]
        return True

    @classmethod
    def authserv_id_of(cls, features: Any, text: str) -> str | None:
        """The authserv-id a header value starts with (authres's grammar), without parsing the rest."""
        header = cls(features)
        header._parse_text = text
        try:
            found = header._parse_authserv_id()
        except authres.core.AuthResError:
            return None
        return str(found).lower() if found else None


def _comment_end(text: str, start: int = 0) -> int:
    """Where the (nested) comment at ``start`` ends; authres's SyntaxError if it does not."""
    depth = 0
    index = start
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise authres.core.SyntaxError('comment: expected FWS or ccontent or ")"', text[start:])


_FEATURES = authres.FeatureContext(
    authres.dmarc, authres.arc, types.SimpleNamespace(AuthenticationResultsHeader=_ResultsHeader)
)


@dataclass(frozen=True)
class TrustedResult:
    """One result (``dmarc=pass header.from=example.com``) from a header our boundary wrote."""

    method: str
    result: str
    properties: Mapping[str, str]
    source: str  # which header: "Authentication-Results by mx.example.com"
    arc_instance: int | None = None  # the ARC set whose ARC-Authentication-Results header held it

    def describe(self) -> str:
        """``dmarc=pass header.from=example.com (Authentication-Results by mx.example.com)``."""
        shown = " ".join(f"{k}={v}" for k, v in self.properties.items() if k in _SHOWN_PROPERTIES)
        return f"{self.method}={self.result}{' ' + shown if shown else ''} ({self.source})"


_SHOWN_PROPERTIES = ("header.from", "header.d", "header.i", "header.s", "smtp.mailfrom")


class BoundaryResults:
    """The results our boundary added, by method (the topmost header with that method), and what was not.

    Read lazily, top to bottom: asking for a method parses trusted headers only until one has it,
    so when the topmost header decides, the others are never parsed.
    """

    def __init__(self, trace_headers: Sequence[tuple[str, str]], settings: AuthenticationSettings) -> None:
        self._by_method: dict[str, tuple[TrustedResult, ...]] = {}
        # a method's results as written, parsed only when that method is asked for: authres reads
        # a whole header at ~25 µs a result, and Gmail's carries three where one decides
        self._unparsed: dict[str, tuple[str, tuple[str, ...], str, int | None]] = {}
        self._ignored: list[str] = []
        self._pending: Iterator[None] | None = None
        if settings.trusted_authserv_ids and trace_headers:
            self._pending = self._read(trace_headers[:MAX_TRACE_HEADERS], settings)

    def of(self, method: str) -> tuple[TrustedResult, ...]:
        """The results for one method (empty when our boundary gave none)."""
        while not self._knows(method) and self._read_one():
            pass
        if method in self._unparsed:
            self._parse_method(method)
        return self._by_method.get(method, ())

    @property
    def present(self) -> bool:
        """Whether any trusted result was found."""
        while not self._by_method and not self._unparsed and self._read_one():
            pass
        return bool(self._by_method or self._unparsed)

    def _knows(self, method: str) -> bool:
        return method in self._by_method or method in self._unparsed

    def _parse_method(self, method: str) -> None:
        head, segments, source, instance = self._unparsed.pop(method)
        try:
            header = _FEATURES.parse_value(f"{head}; {'; '.join(segments)}")
        except authres.core.AuthResError as exc:
            self._note(f"{source}: unreadable ({exc})")
            return
        found = [_trusted(r, source, instance) for r in header.results if str(r.method).lower() == method]
        if found:
            self._by_method[method] = tuple(found)

    @property
    def ignored(self) -> tuple[str, ...]:
        """The headers that were not believed, and why (all headers are read for this)."""
        while self._read_one():
            pass
        return tuple(self._ignored)

    def _read_one(self) -> bool:
        """Read up to the next trusted header; False when there is nothing more to read."""
        if self._pending is None:
            return False
        if next(self._pending, _DONE) is _DONE:
            self._pending = None
            return False
        return True

    def _read(self, trace: Sequence[tuple[str, str]], settings: AuthenticationSettings) -> Iterator[None]:
        trusted_ids = settings.trusted_authserv_ids
        ended: str | None = None  # why the part our servers wrote has ended, once it has
        parsed = 0
        for name, value in trace:
            if name == "received":
                if ended is None:
                    host = received_by_host(value)
                    if host is None or not is_trusted_host(host, settings):
                        ended = f"below the Received hop by {host or '(no by host)'}"
                continue
            if name not in ("authentication-results", "arc-authentication-results"):
                continue
            label, text, instance = _label_and_text(name, value)
            authserv_id = _ResultsHeader.authserv_id_of(_FEATURES, text) if text is not None else None
            if authserv_id is None or text is None:
                self._note(f"an unreadable {label} header")
            elif authserv_id not in trusted_ids:
                self._note(f"{label} by {authserv_id} (not a trusted authserv-id)")
            elif ended is not None:
                self._note(f"{label} by {authserv_id} {ended}")
            elif parsed >= MAX_PARSED_RESULTS:
                self._note(f"{label} by {authserv_id} (more than {MAX_PARSED_RESULTS} trusted headers)")
            else:
                parsed += 1
                self._take(text, f"{label} by {authserv_id}", instance)
                yield None

    def _take(self, text: str, source: str, instance: int | None) -> None:
        """Keep the header's results by method, unparsed; the topmost header's results of a method win."""
        head, *segments = _top_level_parts(text)
        found: dict[str, list[str]] = {}
        for segment in segments:
            token = _METHOD_TOKEN.match(segment)
            method = token.group(1).lower() if token else ""
            if method and method != "none" and not self._knows(method):
                found.setdefault(method, []).append(segment)
        for method, parts in found.items():
            self._unparsed[method] = (head, tuple(parts), source, instance)

    def _note(self, note: str) -> None:
        if len(self._ignored) < 10 and note not in self._ignored:
            self._ignored.append(note)


_DONE = object()
# a result's method: its first word, after any comments (RFC 8601's resinfo: methodspec first)
_SPECIAL = re.compile(r'[;()"\\]')
_METHOD_TOKEN = re.compile(r"\s*(?:\([^()]*\)\s*)*([A-Za-z0-9][A-Za-z0-9_.-]*)")


def _top_level_parts(text: str) -> list[str]:
    """The header's value cut at each ``;`` outside comments and quoted strings (in linear time)."""
    if "(" not in text and '"' not in text:
        cuts = text.split(";")
    else:
        cuts, depth, quoted, start, escaped_at = [], 0, False, 0, -1
        for found in _SPECIAL.finditer(text):  # only the characters that matter are visited
            index, char = found.start(), found.group()
            if index == escaped_at:
                continue
            if char == "\\":
                escaped_at = index + 1
            elif quoted:
                quoted = char != '"'
            elif char == '"':
                quoted = True
            elif char == "(":
                depth += 1
            elif char == ")":
                depth = max(depth - 1, 0)
            elif not depth:  # a ";" between results
                cuts.append(text[start:index])
                start = index + 1
        cuts.append(text[start:])
    return [part for i, part in enumerate(cuts) if i == 0 or part.strip()]


def read_boundary_results(
    trace_headers: Sequence[tuple[str, str]], settings: AuthenticationSettings
) -> BoundaryResults:
    """The trusted results among a message's trace headers (see the module docstring), read lazily."""
    return BoundaryResults(trace_headers, settings)


def _label_and_text(name: str, value: str) -> tuple[str, str | None, int | None]:
    """How a header is named in evidence, its RFC 8601 value (an ARC one without its ``i=``), its ARC set."""
    if name == "authentication-results":
        return "Authentication-Results", value, None
    instance = arc_instance(value)
    if instance is None:
        return "ARC-Authentication-Results", None, None
    return f"ARC-Authentication-Results i={instance}", value.partition(";")[2], instance


def arc_instance(value: str) -> int | None:
    """The ``i=`` an ARC-Authentication-Results value starts with, or None."""
    tag, _, number = value.partition(";")[0].partition("=")
    return instance_number(number) if tag.strip().lower() == "i" else None


def instance_number(text: str) -> int | None:
    """An ARC instance (RFC 8617 4.2.1: 1 to 50) written in ASCII digits, or None.

    ``int`` would also take ``²``, ``١``, ``+1`` and ``1_0``, and raise on 5,000 digits.
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 3:
        return None
    return int(text)


def _trusted(result: Any, source: str, instance: int | None = None) -> TrustedResult:
    properties = {
        f"{prop.type}.{prop.name}".lower(): str(prop.value)
        for prop in result.properties
        if prop.type and prop.name and prop.value is not None
    }
    return TrustedResult(str(result.method).lower(), str(result.result).lower(), properties, source, instance)


def parse_results_value(text: str) -> dict[str, tuple[TrustedResult, ...]]:
    """Every result of one header value (``authserv-id; method=result ...``) by method: for ARC sets."""
    try:
        header = _FEATURES.parse_value(text)
    except authres.core.AuthResError:
        return {}
    source = f"by {header.authserv_id}"
    found: dict[str, list[TrustedResult]] = {}
    for result in header.results:
        found.setdefault(str(result.method).lower(), []).append(_trusted(result, source))
    return {method: tuple(results) for method, results in found.items()}


def received_by_host(value: str) -> str | None:
    """The host named in a Received header's ``by`` clause (RFC 5321 Stamp), lower-cased, or None.

    Words are read from the start, comments skipped, up to the host after ``by``; a ``;`` (the
    date) or an unclosed comment before it means there is none.
    """
    index, length = 0, len(value)
    after_by = False
    while index < length:
        char = value[index]
        if char in " \t":
            index += 1
        elif char == "(":
            try:
                index = _comment_end(value, index)
            except authres.core.AuthResError:
                return None
        elif char == ";":
            return None
        else:
            end = index
            while end < length and value[end] not in " \t(;":
                end += 1
            word = value[index:end]
            if after_by:
                return word.strip("[]").rstrip(".").lower() or None
            after_by = word.lower() == "by"
            index = end
    return None


def is_trusted_host(host: str, settings: AuthenticationSettings) -> bool:
    """Whether a Received header written by ``host`` is one of our own servers' hops."""
    if host in settings.trusted_authserv_ids or host in settings.trusted_relays:
        return True
    suffixes, networks = _relay_patterns(settings.trusted_relays)
    if host.endswith(suffixes):
        return True
    if networks:
        try:
            address = ipaddress.ip_address(host.removeprefix("ipv6:"))
        except ValueError:
            return False
        return any(address in network for network in networks)
    return False


@functools.lru_cache(maxsize=64)
def _relay_patterns(
    relays: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    """The ``*.suffix`` patterns (as ``.suffix``) and the IP networks among the trusted relays."""
    suffixes = tuple(relay[1:] for relay in relays if relay.startswith("*."))
    networks = []
    for relay in relays:
        if "/" in relay:
            try:
                networks.append(ipaddress.ip_network(relay, strict=False))
            except ValueError:
                continue
    return suffixes, tuple(networks)

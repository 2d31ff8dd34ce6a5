"""Checking a mail's DKIM signatures and its From domain's DMARC alignment ourselves (RFC 6376, 7489).

Used only when no trusted Authentication-Results header is present and the account says
``verify_dkim: true``. Signatures are verified with ``dkimpy``, keys and policies are looked up
with ``dnspython`` at the account's ``dns_servers`` (or the system's resolver); the From domain's
organizational domain comes from the Public Suffix List (``publicsuffixlist``). Only signatures
whose ``d=`` could align with the From domain are verified: the others cannot authenticate it.

Contract: ``check_dkim`` and ``check_arc_chain`` never raise for what a message or the DNS
contains; a DNS server that does not answer makes a ``temperror`` verdict (not authenticated).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dkim
import dkim.util
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from engine.config.authentication import DnsServer

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

MAX_SIGNATURES = 5  # DKIM signatures verified per message at most
DNS_LIFETIME_SECONDS = 5.0
_QUIET = logging.getLogger("mailgate.dkim")  # dkimpy's debug chatter goes here (silent by default)


class DnsTemporaryFailure(Exception):
    """A DNS server did not answer (timeout, SERVFAIL, no server reachable)."""


_TEMPORARY = (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration)


class DnsLookup:
    """TXT look-ups through one resolver; remembers whether one failed temporarily."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self._resolver = resolver
        self.temporary_failure: str | None = None

    def txt(self, name: str) -> list[bytes]:
        """The TXT records at ``name`` (each joined from its strings); [] when there are none."""
        try:
            answer = self._resolver.resolve(name, dns.rdatatype.TXT, search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except _TEMPORARY as exc:
            self.temporary_failure = f"{name}: {type(exc).__name__}"
            raise DnsTemporaryFailure(self.temporary_failure) from None
        except dns.exception.DNSException:
            return []
        if answer.rrset is None:
            return []
        return [b"".join(rdata.strings) for rdata in answer.rrset]

    def dkimpy_txt(self, name: bytes, timeout: int = 5) -> bytes | None:
        """The ``dnsfunc`` dkimpy calls for a key: the first TXT record, or None."""
        try:
            records = self.txt(name.decode("ascii", "replace").rstrip("."))
        except DnsTemporaryFailure as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        return records[0] if records else None


@functools.lru_cache(maxsize=16)
def _resolver(servers: tuple[DnsServer, ...]) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(s.address, s.port) for s in servers]
    resolver.lifetime = DNS_LIFETIME_SECONDS
    resolver.cache = dns.resolver.Cache()  # keys and policies are asked for again and again
    return resolver


def dns_lookup(servers: tuple[DnsServer, ...]) -> DnsLookup:
    """A look-up through the given servers (the system's resolver when there are none)."""
    try:
        return DnsLookup(_resolver(servers))
    except dns.resolver.NoResolverConfiguration:
        return DnsLookup(_unconfigured())


def _unconfigured() -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = []
    return resolver


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList  # its list takes a moment to load: only when needed

    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registered domain (RFC 7489 3.2): ``mail.example.co.uk`` -> ``example.co.uk``."""
    domain = domain.lower().rstrip(".")
    found = _public_suffixes().privatesuffix(domain)
    return str(found) if found else domain


def aligned(domain: str, from_domain: str, *, strict: bool) -> bool:
    """DMARC identifier alignment of a DKIM ``d=`` with the From domain (strict or relaxed)."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if strict:
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


@dataclass(frozen=True)
class DmarcPolicy:
    """A published DMARC record, as it applies to one From domain."""

    record_domain: str
    policy: str  # none | quarantine | reject
    strict_dkim: bool

    def describe(self) -> str:
        """``p=reject adkim=s (_dmarc.example.com)``."""
        return f"p={self.policy} adkim={'s' if self.strict_dkim else 'r'} (_dmarc.{self.record_domain})"


def dmarc_policy(from_domain: str, lookup: DnsLookup) -> DmarcPolicy | None:
    """The DMARC policy for a From domain (its own record, else its organizational domain's)."""
    domain = from_domain.lower().rstrip(".")
    org = organizational_domain(domain)
    for record_domain in dict.fromkeys((domain, org)):
        tags = _dmarc_record(lookup.txt(f"_dmarc.{record_domain}"))
        if tags is None:
            continue
        policy = tags.get("p", "none")
        if record_domain != domain:
            policy = tags.get("sp", policy)
        return DmarcPolicy(record_domain, policy, tags.get("adkim", "r") == "s")
    return None


def _dmarc_record(records: list[bytes]) -> dict[str, str] | None:
    """The tags of the one ``v=DMARC1`` record among TXT records (RFC 7489 6.6.3), or None."""
    found: list[dict[str, str]] = []
    for record in records:
        try:
            tags = dkim.util.parse_tag_value(record)
        except dkim.util.InvalidTagValueList:
            continue
        if tags.get(b"v") == b"DMARC1":
            found.append({_text(k): v.decode("ascii", "replace") for k, v in tags.items()})
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class DkimVerdict:
    """What our own check found: ``method`` is dmarc or dkim when the From domain is authenticated."""

    authenticated: bool
    method: str  # dmarc | dkim | none
    evidence: str


def check_dkim(raw: bytes, from_domain: str, lookup: DnsLookup) -> DkimVerdict:
    """Verify the signatures that could align with the From domain, then apply its DMARC policy."""
    try:
        verifier = dkim.DKIM(raw, logger=_QUIET)
    except Exception as exc:  # dkimpy cannot read the message at all
        return DkimVerdict(False, "none", f"dkim=permerror (own check: {type(exc).__name__})")
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    passed: list[str] = []
    failed: list[str] = []
    for index, value in enumerate(signatures[:MAX_SIGNATURES]):
        domain, selector = _signer(value)
        if domain is None or not aligned(domain, from_domain, strict=False):
            continue
        label = f"d={domain} s={selector}"
        try:
            good = bool(verifier.verify(idx=index, dnsfunc=lookup.dkimpy_txt))
            why = "signature did not verify"
        except dkim.DKIMException as exc:
            good, why = False, str(exc).split(" (")[0]
        except Exception as exc:  # a malformed key or signature dkimpy does not classify
            good, why = False, type(exc).__name__
        if lookup.temporary_failure is not None:
            return DkimVerdict(False, "none", f"dkim=temperror (own check: DNS {lookup.temporary_failure})")
        (passed if good else failed).append(label if good else f"{label}: {why}")
    try:
        policy = dmarc_policy(from_domain, lookup)
    except DnsTemporaryFailure as exc:
        return DkimVerdict(False, "none", f"dmarc=temperror (own check: DNS {exc})")
    if policy is None:
        if passed:
            evidence = f"dkim=pass {passed[0]} (own check; no DMARC record for {from_domain})"
            return DkimVerdict(True, "dkim", evidence)
        return DkimVerdict(False, "none", f"dkim={_failure(failed, from_domain)} (own check)")
    for label in passed:
        domain = label.split()[0].removeprefix("d=")
        if aligned(domain, from_domain, strict=policy.strict_dkim):
            evidence = f"dmarc=pass header.from={from_domain} (own check: dkim {label}, {policy.describe()})"
            return DkimVerdict(True, "dmarc", evidence)
        failed.append(f"{label}: not aligned with {from_domain} under adkim=s")
    dkim_result = _failure(failed, from_domain)
    evidence = f"dmarc=fail header.from={from_domain} (own check: {policy.describe()}; dkim={dkim_result})"
    return DkimVerdict(False, "none", evidence)


def _failure(failed: list[str], from_domain: str) -> str:
    if not failed:
        return f"none (no signature by {from_domain} or its organization)"
    return "fail " + "; ".join(failed)


def _signer(value: bytes) -> tuple[str | None, str]:
    """(d=, s=) of a DKIM-Signature header value, or (None, "") if it is not readable."""
    try:
        tags = dkim.util.parse_tag_value(b"".join(value.split()))
    except dkim.util.InvalidTagValueList:
        return None, ""
    domain, selector = tags.get(b"d"), tags.get(b"s")
    if not domain:
        return None, ""
    return domain.decode("ascii", "replace").lower(), (selector or b"").decode("ascii", "replace")


@dataclass(frozen=True)
class ArcChain:
    """Our own verdict on a message's ARC chain, and the sealing domain of each instance."""

    valid: bool
    evidence: str
    sealers: dict[int, str]


def check_arc_chain(raw: bytes, lookup: DnsLookup) -> ArcChain:
    """Validate the ARC chain with dkimpy (RFC 8617 5.2)."""
    try:
        verdict, results, reason = dkim.arc_verify(raw, logger=_QUIET, dnsfunc=lookup.dkimpy_txt)
    except Exception as exc:  # dkimpy cannot read the message at all
        return ArcChain(False, f"arc=permerror (own check: {type(exc).__name__})", {})
    if lookup.temporary_failure is not None:
        return ArcChain(False, f"arc=temperror (own check: DNS {lookup.temporary_failure})", {})
    sealers = {int(r["instance"]): _text(r.get("as-domain")) for r in results if "instance" in r}
    state = _text(verdict)
    detail = f"; {_text(reason)}" if reason and state != "pass" else ""
    return ArcChain(state == "pass", f"arc={state} (own check{detail})", sealers)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return str(value or "").lower()

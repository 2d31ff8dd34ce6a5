"""Whether a mail's sender is who its From header says: the ``sender.authenticated`` and
``sender.authentication`` facts, with the evidence ``explain``, the ledger and history show.

Sources of evidence are tried in the order of ``SOURCES``; the first that authenticates the
sender decides the method; when none does, the sender is unauthenticated (method ``none``) and the
evidence lists what each source found. docs/security.md explains the trust model to admins.

Contract: a source is a function ``(AuthenticationRequest) -> SenderAuthentication | None``. It
returns None when it has nothing to say about this mail (not configured, no material), an
unauthenticated verdict when it found evidence against (kept as evidence), or an authenticated
one. It must never raise for what a message contains, must never believe what the sender could
have written (only results our own boundary added, signatures checked against DNS, tokens we
signed), and must be cheap when it is not configured: it runs for every message. To add a source
(e.g. reply tokens), write such a function and put it in ``SOURCES``; if it needs more than the
request carries, add a field to ``AuthenticationRequest`` with a default. ``authenticate_sender``
runs before the message's transaction (DNS must not hold the database); a source that needs the
database session instead upgrades the verdict in ``engine.rules.gather.gather_facts``, which
returns the final one in ``Situation.authentication`` (the facts, the ledger and history use it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args

from engine.config.authentication import AuthenticationSettings
from engine.mail.message import IncomingMessage

if TYPE_CHECKING:  # authres is imported only when an account trusts some authserv-id
    from engine.mail.auth_results import BoundaryResults, TrustedResult

Method = Literal["dmarc", "dkim", "arc", "reply_token", "none"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True)
class SenderAuthentication:
    """The verdict: authenticated or not, how, and the evidence (which header, signature, token)."""

    authenticated: bool
    method: Method
    evidence: str
    # our boundary's DMARC check failed for the From domain: the From is forged, as far as its
    # owner says, and a reply token (a copy of our mail can reach others) does not outweigh that
    refuted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The form the ledger and ``explain --json`` show."""
        return {"authenticated": self.authenticated, "method": self.method, "evidence": self.evidence}


NOT_CHECKED = SenderAuthentication(False, "none", "not checked")


@dataclass(frozen=True)
class AuthenticationRequest:
    """What a source may read about one mail; ``raw`` is None where the bytes are not at hand."""

    message: IncomingMessage
    settings: AuthenticationSettings
    raw: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # per-caller material a plugged-in source needs

    @cached_property
    def boundary(self) -> BoundaryResults:
        """The results our own boundary added (read once, on first use)."""
        from engine.mail.auth_results import read_boundary_results

        return read_boundary_results(self.message.trace_headers, self.settings)

    @property
    def from_domain(self) -> str:
        """The domain of the From address, lower-cased."""
        return self.message.from_address.rpartition("@")[2].lower().rstrip(".")


Source = Callable[[AuthenticationRequest], SenderAuthentication | None]


def from_boundary(request: AuthenticationRequest) -> SenderAuthentication | None:
    """DMARC (or, without a DMARC result, an aligned DKIM pass) as our boundary's header says."""
    if not request.settings.trusted_authserv_ids:
        return None
    boundary = request.boundary
    domain = request.from_domain
    dmarc = boundary.of("dmarc")
    if all(result.result == "none" for result in dmarc):  # no DMARC policy published: as if no result
        dmarc = ()
    if dmarc:
        ours = [result for result in dmarc if _for_domain(result, "header.from", domain)]
        # a result other than pass for the From domain is final, even beside a pass (docs/security.md)
        if ours and all(result.result == "pass" for result in ours):
            return SenderAuthentication(True, "dmarc", ours[0].describe())
        refuted = any(result.result == "fail" for result in ours)
        return SenderAuthentication(False, "none", _worst(dmarc, domain, "header.from"), refuted)
    dkim = boundary.of("dkim")
    if dkim:
        from engine.mail.dkim_check import aligned

        for result in dkim:
            signer = _signing_domain(result)
            if result.result == "pass" and signer and aligned(signer, domain, strict=False):
                return SenderAuthentication(True, "dkim", result.describe())
        return SenderAuthentication(False, "none", _worst(dkim, domain, "header.d"))
    if boundary.ignored:
        ignored = "; ".join(boundary.ignored)
        return SenderAuthentication(False, "none", f"no trusted result; ignored {ignored}")
    return None


def from_own_dkim_check(request: AuthenticationRequest) -> SenderAuthentication | None:
    """With ``verify_dkim`` and no trusted result at all: DKIM and DMARC checked here, over DNS."""
    if not request.settings.verify_dkim or request.raw is None or request.boundary.present:
        return None
    from engine.mail.dkim_check import check_dkim, dns_lookup

    verdict = check_dkim(request.raw, request.from_domain, dns_lookup(request.settings.dns_servers))
    method: Method = "dmarc" if verdict.method == "dmarc" else "dkim" if verdict.authenticated else "none"
    return SenderAuthentication(verdict.authenticated, method, verdict.evidence)


def from_trusted_arc_sealer(request: AuthenticationRequest) -> SenderAuthentication | None:
    """An intact ARC chain (RFC 8617) in which a sealer we trust saw DMARC pass for this From domain."""
    settings = request.settings
    if not settings.trusted_arc_sealers:
        return None
    sets, doubled = _arc_sets(request.message.trace_headers)
    if not sets:
        return None
    if doubled:  # RFC 8617 5.2: the chain fails; a lenient validator may have read another one
        why = f"ARC set i={doubled[0]} has more than one ARC-Seal or ARC-Authentication-Results header"
        return SenderAuthentication(False, "none", why)
    chain_results = request.boundary.of("arc")
    if chain_results:
        valid = all(r.result == "pass" for r in chain_results)
        chain = chain_results[0].describe()
    elif settings.verify_dkim and request.raw is not None:
        from engine.mail.dkim_check import check_arc_chain, dns_lookup

        own = check_arc_chain(request.raw, dns_lookup(settings.dns_servers))
        valid, chain = own.valid, own.evidence
    else:
        return SenderAuthentication(False, "none", "ARC chain not validated (no trusted arc= result)")
    if not valid:
        return SenderAuthentication(False, "none", chain)
    from engine.mail.auth_results import parse_results_value

    # our boundary's own set, if it seals too (Gmail, Exchange Online): its verdict is the chain's
    ours = {r.arc_instance for r in chain_results if r.arc_instance is not None}
    domain = request.from_domain
    seen: list[str] = []
    untrusted_after: str | None = None  # a later set by a sealer we do not trust
    for instance in sorted(sets, reverse=True):
        sealer, written = sets[instance]
        if sealer not in settings.trusted_arc_sealers:
            if instance not in ours and untrusted_after is None:
                untrusted_after = f"ARC set i={instance} sealed by {sealer}"
            continue
        if untrusted_after is not None:  # whoever sealed it may have changed the mail since
            seen.append(
                f"ARC set i={instance} sealed by {sealer} does not count: {untrusted_after}, "
                "which we do not trust, came after it"
            )
            break
        results = parse_results_value(written) if written is not None else {}
        for result in results.get("dmarc", ()):
            if result.result == "pass" and _for_domain(result, "header.from", domain):
                evidence = f"ARC set i={instance} sealed by {sealer}: {result.describe()}; chain {chain}"
                return SenderAuthentication(True, "arc", evidence)
        seen.append(f"ARC set i={instance} sealed by {sealer} has no dmarc=pass for {domain}")
    return SenderAuthentication(False, "none", "; ".join(seen) or "no ARC set sealed by a trusted sealer")


SOURCES: list[Source] = [from_boundary, from_own_dkim_check, from_trusted_arc_sealer]


def authenticate_sender(
    message: IncomingMessage,
    settings: AuthenticationSettings,
    *,
    raw: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> SenderAuthentication:
    """The verdict on one mail's sender; ``raw`` (the message's bytes) enables the DKIM check."""
    repeated = repeated_field_verdict(message)
    if repeated is not None:
        return repeated
    request = AuthenticationRequest(message, settings, raw, extra or {})
    against: list[str] = []
    refuted = False
    for source in SOURCES:
        verdict = source(request)
        if verdict is None:
            continue
        if verdict.authenticated:
            return verdict
        refuted = refuted or verdict.refuted
        if verdict.evidence not in against:
            against.append(verdict.evidence)
    if against:
        return SenderAuthentication(False, "none", "; ".join(against), refuted)
    if not settings.configured:
        return SenderAuthentication(False, "none", "no sender authentication configured for this account")
    return SenderAuthentication(False, "none", "no authentication result from a trusted server")


def repeated_field_verdict(message: IncomingMessage) -> SenderAuthentication | None:
    """Not authenticated, whatever the evidence, when a field allowed once is repeated; else None.

    Every verdict (our boundary's, our own DKIM check, an ARC sealer's) rests on signatures that
    cover one instance of a field, the bottom-most, while the topmost is read. A reply token does
    not vouch for such a mail either.
    """
    if message.repeated_field is None:
        return None
    return SenderAuthentication(False, "none", f"{message.repeated_field}; a signature covers only one")


def _for_domain(result: TrustedResult, prop: str, domain: str) -> bool:
    """Whether a result names ``domain`` in ``prop`` (a result that names no domain counts)."""
    named = result.properties.get(prop)
    return named is None or named.rpartition("@")[2].lower().rstrip(".") == domain


def _signing_domain(result: TrustedResult) -> str | None:
    signer = result.properties.get("header.d")
    if signer is None and "header.i" in result.properties:
        signer = result.properties["header.i"].rpartition("@")[2]
    return signer.lower().rstrip(".") if signer else None


def _worst(results: tuple[TrustedResult, ...], domain: str, prop: str) -> str:
    """The evidence against: a result that is not a pass, or a pass for another domain."""
    for result in results:
        if result.result != "pass":
            return result.describe()
    return f"{results[0].describe()} is not for {domain}"


def _arc_sets(
    trace_headers: tuple[tuple[str, str], ...],
) -> tuple[dict[int, tuple[str, str | None]], list[int]]:
    """Each ARC instance's sealing domain (ARC-Seal d=) and its ARC-Authentication-Results as
    written (parsed only for a sealer we trust), and the instances that have more than one of either."""
    import dkim.util

    from engine.mail.auth_results import arc_instance, instance_number

    sealers: dict[int, str] = {}
    results: dict[int, str] = {}
    doubled: list[int] = []
    for name, value in trace_headers:
        if name == "arc-seal":
            try:
                tags = dkim.util.parse_tag_value(b"".join(value.encode("utf-8", "replace").split()))
            except dkim.util.InvalidTagValueList:
                continue
            instance = instance_number(tags.get(b"i", b"").decode("ascii", "replace"))
            if instance in sealers:
                doubled.append(instance)
            elif instance is not None:
                sealers[instance] = tags.get(b"d", b"").decode("ascii", "replace").lower()
        elif name == "arc-authentication-results":
            number = arc_instance(value)
            if number in results:
                doubled.append(number)
            elif number is not None:
                results[number] = value.partition(";")[2]
    return {i: (sealers[i], results.get(i)) for i in sealers}, doubled

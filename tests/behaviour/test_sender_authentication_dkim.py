"""Sender authentication that mailgate checks itself: DKIM, DMARC alignment and ARC, over real DNS.

Keys are made here, mails are signed and sealed with dkimpy, and the public keys and DMARC
records are served by the loopback DNS server (``dns_server``), which the account is pointed at
through its ``authentication.dns_servers`` setting.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk
    from servers.dns import DnsTestServer

ITEMS = """\
tasks:
  - {number: 400, kind: approval, status: open, sequence: 1, approver: fran@example.com}
"""
REQUIRED = {"commands_require_authentication": True}
SIGNED_HEADERS = [b"from", b"to", b"subject", b"message-id"]


@pytest.fixture(scope="module")
def private_key() -> bytes:
    """One 2048-bit RSA key (PEM) for every signer of this module."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.fixture
def dns(dns_server: DnsTestServer, private_key: bytes) -> Iterator[DnsTestServer]:
    """The loopback DNS server with the signers' public keys published."""
    key = serialization.load_pem_private_key(private_key, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    for name in (
        "s1._domainkey.example.com",
        "s1._domainkey.mail.example.com",
        "arc1._domainkey.lists.example.org",
        "arc1._domainkey.evil.example",
    ):
        dns_server.publish(name, record)
    yield dns_server


def unsigned(subject: str = "[APPROVE#400]", sender: str = "fran@example.com", body: str = "Yes.\n") -> bytes:
    """The mail as its author wrote it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@desk.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    msg.set_content(body)
    return msg.as_bytes()


def signed(key: bytes, domain: str = "example.com", **parts: Any) -> bytes:
    """The mail signed by ``domain`` (selector s1), as its author's server sends it."""
    raw = unsigned(**parts)
    return dkim.sign(raw, b"s1", domain.encode(), key, include_headers=SIGNED_HEADERS) + raw


def through_list(key: bytes, raw: bytes) -> bytes:
    """The mail after a mailing list: its verdict recorded, a footer added (DKIM breaks), ARC-sealed."""
    verdict = b"Authentication-Results: lists.example.org; dkim=pass header.d=example.com;"
    verdict += b" dmarc=pass header.from=example.com; arc=none\n"
    changed = verdict + raw.replace(b"Yes.\n", b"Yes.\n-- \nThe approvers' list\n")
    seal = dkim.arc_sign(changed, b"arc1", b"lists.example.org", key, b"lists.example.org")
    return b"".join(seal) + changed


def resealed(key: bytes, raw: bytes, sealer: bytes, verdict: bytes = b"arc=pass") -> bytes:
    """The mail after another intermediary: its verdict recorded, maybe changed, and ARC-sealed."""
    recorded = b"Authentication-Results: " + sealer + b"; " + verdict + b"\n" + raw
    return b"".join(dkim.arc_sign(recorded, b"arc1", sealer, key, sealer)) + recorded


def checking_desk(make_desk: MakeDesk, dns: DnsTestServer, **authentication: Any) -> Desk:
    """A desk that requires authentication for commands and checks DKIM itself over ``dns``."""
    settings = {"verify_dkim": True, "dns_servers": [dns.address], **authentication}
    return make_desk(ITEMS, flags=REQUIRED, authentication=settings)


def list_trusting_desk(make_desk: MakeDesk) -> Desk:
    """A desk that requires authentication, trusts our boundary and the list's ARC sealer."""
    trusting = {"trusted_authserv_ids": ["mx.desk.example"], "trusted_arc_sealers": ["lists.example.org"]}
    return make_desk(ITEMS, flags=REQUIRED, authentication=trusting)


def _approved_by(desk: Desk, result: Any, method: str) -> str:
    assert (result.outcome, result.rule) == ("approved", "approve_task"), result.reason
    update = next(h for h in desk.task(400)["history"] if h["kind"] == "email_update")
    assert update["sender_authentication"] == method
    evidence: str = desk.ledger()[-1]["detail"]["authentication"]["evidence"]
    return evidence


def _refused(desk: Desk, result: Any) -> str:
    assert (result.outcome, result.rule) == ("refused", "command_from_unauthenticated_sender")
    assert desk.task(400)["status"] == "open"
    assert desk.outbox() == []
    assert result.reason is not None
    return result.reason


def test_a_signed_approval_is_authenticated_by_our_own_dmarc_check(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns)
    evidence = _approved_by(desk, desk.deliver_raw(signed(private_key)), "dmarc")
    assert evidence.startswith("dmarc=pass header.from=example.com (own check: dkim d=example.com s=s1")
    assert "p=reject adkim=r" in evidence


def test_a_tampered_body_is_not_authenticated(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns)
    tampered = signed(private_key).replace(b"Yes.", b"No!!")
    reason = _refused(desk, desk.deliver_raw(tampered))
    assert "dmarc=fail header.from=example.com" in reason
    assert "d=example.com s=s1: body hash mismatch" in reason


def test_without_a_dmarc_record_an_aligned_signature_authenticates_by_dkim(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    desk = checking_desk(make_desk, dns)
    evidence = _approved_by(desk, desk.deliver_raw(signed(private_key)), "dkim")
    assert evidence == "dkim=pass d=example.com s=s1 (own check; no DMARC record for example.com)"


def test_relaxed_alignment_accepts_a_signature_by_a_subdomain(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=quarantine; adkim=r")
    desk = checking_desk(make_desk, dns)
    evidence = _approved_by(desk, desk.deliver_raw(signed(private_key, domain="mail.example.com")), "dmarc")
    assert "dkim d=mail.example.com s=s1" in evidence


def test_strict_alignment_refuses_a_signature_by_a_subdomain(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject; adkim=s")
    desk = checking_desk(make_desk, dns)
    reason = _refused(desk, desk.deliver_raw(signed(private_key, domain="mail.example.com")))
    assert "d=mail.example.com s=s1: not aligned with example.com under adkim=s" in reason


def test_a_signed_mail_replayed_with_a_subject_added_on_top_is_not_authenticated(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns)
    replayed = b"Subject: [APPROVE#400]\n" + signed(private_key, subject="Lunch on Friday?")
    reason = _refused(desk, desk.deliver_raw(replayed))
    assert "the mail has 2 Subject headers; a signature covers only one" in reason
    assert dns.asked() == []


def test_a_signature_of_another_organization_is_not_even_checked(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns)
    reason = _refused(desk, desk.deliver_raw(signed(private_key, domain="example.net")))
    assert "no signature by example.com or its organization" in reason
    assert "s1._domainkey.example.net" not in dns.asked()


def test_a_dns_server_failure_is_not_authentication(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.fail("s1._domainkey.example.com")
    desk = checking_desk(make_desk, dns)
    reason = _refused(desk, desk.deliver_raw(signed(private_key)))
    assert "dkim=temperror (own check: DNS s1._domainkey.example.com: NoNameservers)" in reason


def test_no_dkim_check_when_a_trusted_result_decides(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    desk = checking_desk(make_desk, dns, trusted_authserv_ids=["mx.desk.example"])
    verdict = b"Authentication-Results: mx.desk.example; dmarc=pass header.from=example.com\n"
    _approved_by(desk, desk.deliver_raw(verdict + signed(private_key)), "dmarc")
    assert dns.asked() == []


def test_an_arc_set_from_a_trusted_sealer_authenticates_a_mail_a_list_changed(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    desk = list_trusting_desk(make_desk)
    ours = b"Authentication-Results: mx.desk.example; dkim=fail header.d=example.com;"
    ours += b" dmarc=fail header.from=example.com; arc=pass\n"
    evidence = _approved_by(
        desk, desk.deliver_raw(ours + through_list(private_key, signed(private_key))), "arc"
    )
    assert evidence.startswith("ARC set i=1 sealed by lists.example.org: dmarc=pass header.from=example.com")
    assert evidence.endswith("chain arc=pass (Authentication-Results by mx.desk.example)")


def test_an_arc_set_from_a_sealer_we_do_not_trust_is_not_honoured(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    desk = make_desk(
        ITEMS,
        flags=REQUIRED,
        authentication={
            "trusted_authserv_ids": ["mx.desk.example"],
            "trusted_arc_sealers": ["other.example"],
        },
    )
    ours = b"Authentication-Results: mx.desk.example; dmarc=fail header.from=example.com; arc=pass\n"
    reason = _refused(desk, desk.deliver_raw(ours + through_list(private_key, signed(private_key))))
    assert "no ARC set sealed by a trusted sealer" in reason


def test_our_own_arc_check_validates_the_chain_over_dns(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns, trusted_arc_sealers=["lists.example.org"])
    evidence = _approved_by(desk, desk.deliver_raw(through_list(private_key, signed(private_key))), "arc")
    assert evidence.endswith("chain arc=pass (own check)")
    assert "arc1._domainkey.lists.example.org" in dns.asked()


def test_a_broken_arc_chain_is_not_honoured(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    desk = checking_desk(make_desk, dns, trusted_arc_sealers=["lists.example.org"])
    broken = through_list(private_key, signed(private_key)).replace(b"approvers' list", b"approvers' LIST")
    reason = _refused(desk, desk.deliver_raw(broken))
    assert "arc=fail (own check" in reason


def test_a_trusted_sealers_verdict_does_not_survive_an_untrusted_sealer_after_it(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    """Fran's list mail, its subject changed and resealed by the attacker: the chain is intact."""
    dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
    listed = through_list(private_key, signed(private_key, subject="Lunch on Friday?"))
    changed = listed.replace(b"Subject: Lunch on Friday?", b"Subject: [APPROVE#400]")
    attacked = resealed(private_key, changed, b"evil.example")
    own = checking_desk(make_desk, dns, trusted_arc_sealers=["lists.example.org"])
    reason = _refused(own, own.deliver_raw(attacked))
    assert "ARC set i=2 sealed by evil.example, which we do not trust, came after" in reason
    boundary = list_trusting_desk(make_desk)
    ours = b"Authentication-Results: mx.desk.example; dmarc=fail header.from=example.com; arc=pass\n"
    reason = _refused(boundary, boundary.deliver_raw(ours + attacked))
    assert "ARC set i=2 sealed by evil.example, which we do not trust, came after" in reason


def test_our_boundarys_own_arc_set_above_a_trusted_sealers_keeps_its_verdict(
    make_desk: MakeDesk, dns: DnsTestServer, private_key: bytes
) -> None:
    """As Gmail and Exchange Online do: the boundary seals too, its verdict in that set's results."""
    desk = list_trusting_desk(make_desk)
    listed = through_list(private_key, signed(private_key))
    verdict = b"dkim=fail header.d=example.com; dmarc=fail header.from=example.com; arc=pass"
    sealed_by_us = resealed(private_key, listed, b"mx.desk.example", verdict)
    ours = sealed_by_us.replace(b"Authentication-Results: mx.desk.example;", b"X-Seen: mx.desk.example;", 1)
    evidence = _approved_by(desk, desk.deliver_raw(ours), "arc")
    assert evidence.startswith("ARC set i=1 sealed by lists.example.org: dmarc=pass")

"""Times sender authentication per message against the 50 µs target (a trusted header decides).

Run: ``python bench/bench_auth.py``. For realistic mails it prints the median time of
``authenticate_sender`` in CPU time (the added cost per message; the trace headers it reads are collected
while the mail is parsed anyway) and the ratio to the target:

- an account with nothing configured (what every account pays; bench_e2e's case);
- Postfix + OpenDKIM + OpenDMARC: two trusted Authentication-Results headers below an LMTP hop;
- Gmail: its ARC-Authentication-Results above its Received hop and its Authentication-Results
  below, with Google's internal hop on top;
- a forged mail: a spoofed header of an untrusted authserv-id and one below an untrusted hop;
- mailgate's own DKIM and DMARC check (``verify_dkim``), keys and policy from a DNS server on
  loopback (tests/servers/dns.py), answers cached as in service: only when no trusted result is
  present, so it is shown for comparison, not against the target.

No assertions: this is a measurement, not a test.
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
import timeit
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from servers.dns import DnsTestServer  # noqa: E402

from engine.config.authentication import AuthenticationSettings, parse_dns_server  # noqa: E402
from engine.mail.authentication import authenticate_sender  # noqa: E402
from engine.mail.message import IncomingMessage, parse_message  # noqa: E402

TARGET_MICROSECONDS = 50.0
REPEATS = 7

POSTFIX = [
    "Received: from mx.example.org (mx.example.org [10.0.0.5]) by imap.example.org with LMTP id"
    " aBcD1234 (envelope-from <ada@example.com>) for <helpdesk@example.org>; Mon, 2 Mar 2026 09:30:01 +0000",
    "Authentication-Results: mx.example.org; dmarc=pass (p=reject dis=none) header.from=example.com",
    "Authentication-Results: mx.example.org; dkim=pass (2048-bit key; unprotected)"
    ' header.d=example.com header.i=@example.com header.a=rsa-sha256 header.s=s1 header.b="Xb1dY2eZ"',
    "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.example.org (Postfix) with"
    " ESMTPS id 4F2Xk81bQz9 for <helpdesk@example.org>; Mon, 2 Mar 2026 09:30:00 +0000 (UTC)",
]
GMAIL = [
    "Received: by 2002:a05:7108:5b8a:b0:3a8:d4ea:8e9d with SMTP id w10csp1234567gdk;"
    " Mon, 2 Mar 2026 01:02:03 -0800 (PST)",
    "ARC-Seal: i=1; a=rsa-sha256; t=1772442123; cv=none; d=google.com; s=arc-20240605; b=AbCdEf",
    "ARC-Authentication-Results: i=1; mx.google.com; dkim=pass header.i=@example.com header.s=s1"
    " header.b=Xb1dY2eZ; spf=pass (google.com: domain of ada@example.com designates 192.0.2.10 as"
    " permitted sender) smtp.mailfrom=ada@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE)"
    " header.from=example.com",
    "Received: from mail.example.com (mail.example.com. [192.0.2.10]) by mx.google.com with ESMTPS id"
    " x1-20020a05600c;  for <helpdesk@example.org> (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384);"
    " Mon, 02 Mar 2026 01:02:03 -0800 (PST)",
    "Received-SPF: pass (google.com: domain of ada@example.com designates 192.0.2.10) client-ip=192.0.2.10;",
    "Authentication-Results: mx.google.com; dkim=pass header.i=@example.com header.s=s1"
    " header.b=Xb1dY2eZ; spf=pass smtp.mailfrom=ada@example.com; dmarc=pass (p=REJECT sp=REJECT"
    " dis=NONE) header.from=example.com",
]
FORGED = [
    "Authentication-Results: mx.example.org; dmarc=fail (p=reject dis=none) header.from=example.com",
    "Received: from evil.example (evil.example [198.51.100.7]) by mx.example.org (Postfix) with"
    " ESMTP id 4F2Xk81bQzA; Mon, 2 Mar 2026 09:30:00 +0000 (UTC)",
    "Authentication-Results: mx.attacker.example; dmarc=pass header.from=example.com",
    "Received: from x by relay.attacker.example with SMTP; Mon, 2 Mar 2026 09:29:00 +0000",
    "Authentication-Results: mx.example.org; dmarc=pass header.from=example.com",
]


def mail(trace: list[str]) -> bytes:
    """A typical approval mail below the given trace headers."""
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <ada@example.com>"
    msg["To"] = "helpdesk@example.org"
    msg["Subject"] = "Re: [APPROVE#5839] New laptop for the reception"
    msg["Message-ID"] = "<CAF1x2y3z4@mail.example.com>"
    msg["Date"] = "Mon, 2 Mar 2026 09:29:58 +0000"
    msg.set_content("Approved, within budget.\n\nAda\n\n> Please approve the laptop.\n" * 3)
    return "".join(f"{line}\r\n" for line in trace).encode() + msg.as_bytes()


def median_microseconds(
    message: IncomingMessage, settings: AuthenticationSettings, raw: bytes, number: int
) -> float:
    """Median over REPEATS runs of the CPU time per ``authenticate_sender`` call, in microseconds."""
    runs = timeit.repeat(
        lambda: authenticate_sender(message, settings, raw=raw),
        number=number,
        repeat=REPEATS,
        timer=time.process_time,  # CPU time: other processes on a busy machine do not count
    )
    return statistics.median(runs) / number * 1e6


def report(
    name: str, raw: bytes, settings: AuthenticationSettings, number: int = 2_000, target: bool = True
) -> None:
    """Print one case: its verdict and its median cost."""
    message = parse_message(raw)
    verdict = authenticate_sender(message, settings, raw=raw)
    micro = median_microseconds(message, settings, raw, number)
    ratio = f"{micro / TARGET_MICROSECONDS:5.2f} x target" if target else "(for comparison)"
    print(f"{name:<44} {micro:9.1f} µs  {ratio}  -> {verdict.method}: {verdict.evidence[:70]}")


def main() -> None:
    """Run every case."""
    print(
        f"sender authentication per message (median of {REPEATS} runs; target {TARGET_MICROSECONDS:.0f} µs)"
    )
    report("nothing configured", mail(POSTFIX), AuthenticationSettings())
    postfix = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",), trusted_relays=("imap.example.org",)
    )
    report("Postfix + OpenDMARC verdict decides", mail(POSTFIX), postfix)
    gmail = AuthenticationSettings(trusted_authserv_ids=("mx.google.com",), trusted_relays=("2002::/16",))
    report("Gmail verdict decides", mail(GMAIL), gmail)
    report("forged mail (our fail, spoofed passes)", mail(FORGED), postfix)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    dns = DnsTestServer()
    try:
        dns.publish("s1._domainkey.example.com", f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")
        dns.publish("_dmarc.example.com", "v=DMARC1; p=reject")
        raw = mail([])
        raw = dkim.sign(raw, b"s1", b"example.com", pem, include_headers=[b"from", b"to", b"subject"]) + raw
        server = parse_dns_server(dns.address)
        assert server is not None
        own = AuthenticationSettings(verify_dkim=True, dns_servers=(server,))
        report("own DKIM + DMARC check (no trusted result)", raw, own, number=50, target=False)
    finally:
        dns.stop()


if __name__ == "__main__":
    main()

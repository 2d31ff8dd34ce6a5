"""Reading the evidence about a sender: trusted headers, Received hops, the verdict and its facts.

Whole mails through the pipeline are in tests/behaviour/test_sender_authentication*.py; here the
pieces are checked on their own: which headers count, which hops end our part of the header,
that headers are parsed only as far as needed, and that the schema records the verdict.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from engine.config.authentication import AuthenticationSettings, DnsServer, parse_dns_server
from engine.mail.auth_results import (
    MAX_PARSED_RESULTS,
    is_trusted_host,
    read_boundary_results,
    received_by_host,
)
from engine.mail.authentication import METHODS, SOURCES, AuthenticationRequest, authenticate_sender
from engine.mail.message import parse_message
from engine.rules.facts import FACTS

OURS = AuthenticationSettings(
    trusted_authserv_ids=("mx.example.org",), trusted_relays=("*.internal.example.org",)
)


def parsed(*trace: str, sender: str = "ada@example.com") -> bytes:
    """A small mail with the given trace header lines on top."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@example.org"
    msg["Subject"] = "[APPROVE#1]"
    msg.set_content("ok\n")
    return "".join(f"{line}\n" for line in trace).encode() + msg.as_bytes()


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (
            "from a.example (a.example [192.0.2.1]) by MX.Example.org. (Postfix) with ESMTPS id 1; Mon",
            "mx.example.org",
        ),
        ("from x (helo says by mx.example.org) by relay.evil.example with SMTP; Mon", "relay.evil.example"),
        (
            "by 2002:a05:7108:5b8a:b0:3a8:d4ea:8e9d with SMTP id w10; Mon",
            "2002:a05:7108:5b8a:b0:3a8:d4ea:8e9d",
        ),
        ("from x (a (nested \\) comment) by y) by [10.1.2.3] with LMTP", "10.1.2.3"),
        ("from x.example; Mon, 2 Mar 2026", None),
        ("from x (unclosed by mx.example.org", None),
        ("from x.example with SMTP", None),
    ],
)
def test_the_by_host_of_a_received_header_is_read_past_comments(value: str, host: str | None) -> None:
    assert received_by_host(value) == host


def test_trusted_hosts_are_authserv_ids_relays_wildcards_and_networks() -> None:
    settings = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",),
        trusted_relays=("imap.example.org", "*.corp.example.org", "2002::/16"),
    )
    assert is_trusted_host("mx.example.org", settings)
    assert is_trusted_host("imap.example.org", settings)
    assert is_trusted_host("a.b.corp.example.org", settings)
    assert is_trusted_host("2002:a05:6a10::1", settings)
    assert not is_trusted_host("corp.example.org", settings)
    assert not is_trusted_host("evilcorp.example.org", settings)
    assert not is_trusted_host("2003::1", settings)
    assert not is_trusted_host("mx.example.org.evil.example", settings)


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("192.0.2.53", DnsServer("192.0.2.53", 53)),
        ("127.0.0.1:5353", DnsServer("127.0.0.1", 5353)),
        ("2001:db8::53", DnsServer("2001:db8::53", 53)),
        ("[2001:db8::53]:5300", DnsServer("2001:db8::53", 5300)),
        ("dns.example.org", None),
        ("192.0.2.53:0", None),
        ("[2001:db8::53]x", None),
    ],
)
def test_dns_servers_are_addresses_with_an_optional_port(text: str, server: DnsServer | None) -> None:
    assert parse_dns_server(text) == server


def test_the_trace_headers_are_kept_in_order_and_nothing_else() -> None:
    message = parse_message(
        parsed(
            "Received: by mx.example.org; Mon",
            "Authentication-Results: mx.example.org; dmarc=pass",
            "X-Spam: no",
            "ARC-Seal: i=1; d=lists.example.net; s=a; cv=none; b=x",
            "Received: from a by b; Mon",
        )
    )
    assert [name for name, _ in message.trace_headers] == [
        "received",
        "authentication-results",
        "arc-seal",
        "received",
    ]


def test_headers_are_parsed_only_until_the_asked_method_is_found() -> None:
    message = parse_message(
        parsed(
            "Authentication-Results: mx.example.org; dmarc=pass header.from=example.com",
            "Authentication-Results: mx.example.org; dkim=pass (unclosed comment",
        )
    )
    boundary = read_boundary_results(message.trace_headers, OURS)
    assert [r.result for r in boundary.of("dmarc")] == ["pass"]
    assert boundary._pending is not None  # the second header is still unread
    assert boundary.of("dkim") == ()
    assert any("unreadable" in note for note in boundary.ignored)


def test_only_the_asked_methods_results_of_a_header_are_parsed() -> None:
    message = parse_message(
        parsed(
            "Authentication-Results: mx.example.org; dkim=pass ===; spf=pass (a comment; with a semicolon)"
            " smtp.mailfrom=example.com; dmarc=pass header.from=example.com",
        )
    )
    boundary = read_boundary_results(message.trace_headers, OURS)

    assert [r.result for r in boundary.of("dmarc")] == ["pass"]  # the broken dkim result is not read
    assert [r.result for r in boundary.of("spf")] == ["pass"]
    assert boundary.of("dkim") == ()
    assert any("unreadable" in note for note in boundary.ignored)


def test_at_most_a_bounded_number_of_trusted_headers_are_parsed() -> None:
    flood = [f"Authentication-Results: mx.example.org; x{i}=pass" for i in range(MAX_PARSED_RESULTS + 5)]
    message = parse_message(parsed(*flood, "Authentication-Results: mx.example.org; dmarc=pass"))
    boundary = read_boundary_results(message.trace_headers, OURS)
    assert boundary.of("dmarc") == ()
    assert f"more than {MAX_PARSED_RESULTS} trusted headers" in " ".join(boundary.ignored)


def test_untrusted_headers_are_not_parsed_beyond_their_authserv_id() -> None:
    message = parse_message(parsed("Authentication-Results: mx.evil.example; dmarc=pass (broken"))
    boundary = read_boundary_results(message.trace_headers, OURS)
    assert boundary.ignored == ("Authentication-Results by mx.evil.example (not a trusted authserv-id)",)


def test_an_arc_authentication_results_header_without_its_instance_is_unreadable() -> None:
    message = parse_message(parsed("ARC-Authentication-Results: mx.example.org; dmarc=pass"))
    verdict = authenticate_sender(message, OURS)
    assert not verdict.authenticated
    assert "an unreadable ARC-Authentication-Results header" in verdict.evidence


@pytest.mark.parametrize("instance", ["\u00b2", "\u0661", "9" * 5000, "+1", "1_0"])
def test_an_arc_instance_not_in_ascii_digits_is_ignored_without_an_error(instance: str) -> None:
    settings = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",), trusted_arc_sealers=("l.example",)
    )
    raw = parsed(
        "Authentication-Results: mx.example.org; dmarc=fail header.from=example.com; arc=pass",
        f"ARC-Seal: i={instance}; a=rsa-sha256; cv=none; d=l.example; s=s; b=AA==",
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=l.example; s=s; b=AA==",
        f"ARC-Authentication-Results: i={instance}; l.example; dmarc=pass header.from=example.com",
        "ARC-Authentication-Results: i=1; l.example; dmarc=fail header.from=example.com",
        sender="ada@example.com",
    )
    verdict = authenticate_sender(parse_message(raw), settings, raw=raw)
    assert (verdict.authenticated, verdict.method) == (False, "none")
    assert "ARC set i=1 sealed by l.example has no dmarc=pass for example.com" in verdict.evidence


@pytest.mark.parametrize(
    "doubled", ["ARC-Authentication-Results: i=1; l.example; dmarc=pass", "ARC-Seal: i=1; d=l.example"]
)
def test_an_arc_set_with_a_doubled_header_authenticates_nobody(doubled: str) -> None:
    settings = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",), trusted_arc_sealers=("l.example",)
    )
    raw = parsed(
        "Authentication-Results: mx.example.org; dmarc=fail header.from=example.com; arc=pass",
        doubled,
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=l.example; s=s; b=AA==",
        "ARC-Authentication-Results: i=1; l.example; dmarc=pass header.from=example.com",
    )
    verdict = authenticate_sender(parse_message(raw), settings, raw=raw)
    assert (verdict.authenticated, verdict.method) == (False, "none")
    assert "ARC set i=1 has more than one ARC-Seal or ARC-Authentication-Results header" in verdict.evidence


def test_only_the_arc_results_of_sets_sealed_by_a_trusted_sealer_are_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A megabyte of ARC-Authentication-Results took two seconds to parse, all for nothing."""
    import engine.mail.auth_results

    parsed_texts: list[str] = []
    real = engine.mail.auth_results.parse_results_value
    monkeypatch.setattr(
        engine.mail.auth_results, "parse_results_value", lambda text: parsed_texts.append(text) or real(text)
    )
    settings = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",), trusted_arc_sealers=("l.example",)
    )
    flood = [f"ARC-Authentication-Results: i={i}; l.example" + "; a=pass" * 100 for i in range(3, 40)]
    raw = parsed(
        "Authentication-Results: mx.example.org; dmarc=fail header.from=example.com; arc=pass",
        *flood,
        "ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=l.example; s=s; b=AA==",
        "ARC-Authentication-Results: i=2; l.example; dmarc=pass header.from=example.com",
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=elsewhere.example; s=s; b=AA==",
        "ARC-Authentication-Results: i=1; elsewhere.example" + "; a=pass" * 100,
    )
    verdict = authenticate_sender(parse_message(raw), settings, raw=raw)
    assert (verdict.authenticated, verdict.method) == (True, "arc")
    assert parsed_texts == [" l.example; dmarc=pass header.from=example.com"]


def test_an_arc_fail_beside_an_arc_pass_leaves_the_chain_broken() -> None:
    settings = AuthenticationSettings(
        trusted_authserv_ids=("mx.example.org",), trusted_arc_sealers=("l.example",)
    )
    raw = parsed(
        "Authentication-Results: mx.example.org; dmarc=fail header.from=example.com; arc=fail; arc=pass",
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=l.example; s=s; b=AA==",
        "ARC-Authentication-Results: i=1; l.example; dmarc=pass header.from=example.com",
    )
    verdict = authenticate_sender(parse_message(raw), settings, raw=raw)
    assert (verdict.authenticated, verdict.method) == (False, "none")


def test_a_dmarc_result_that_names_no_domain_is_taken_for_the_from_domain() -> None:
    message = parse_message(parsed("Authentication-Results: mx.example.org; dmarc=pass"))
    assert authenticate_sender(message, OURS).method == "dmarc"


def test_an_account_that_trusts_nothing_authenticates_nobody_and_says_so() -> None:
    message = parse_message(parsed("Authentication-Results: mx.example.org; dmarc=pass"))
    verdict = authenticate_sender(message, AuthenticationSettings())
    assert (verdict.authenticated, verdict.method) == (False, "none")
    assert verdict.evidence == "no sender authentication configured for this account"


def test_a_new_source_is_one_function_in_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.mail.authentication import SenderAuthentication

    def token(request: AuthenticationRequest) -> SenderAuthentication | None:
        if request.extra.get("token") == "signed-by-us":
            return SenderAuthentication(True, "reply_token", "reply token signed-by-us")
        return None

    monkeypatch.setattr("engine.mail.authentication.SOURCES", [*SOURCES, token])
    message = parse_message(parsed())
    verdict = authenticate_sender(message, OURS, extra={"token": "signed-by-us"})
    assert (verdict.method, verdict.evidence) == ("reply_token", "reply token signed-by-us")
    assert authenticate_sender(message, OURS).method == "none"


def test_the_facts_are_declared_for_rule_packs() -> None:
    assert FACTS["sender.authenticated"].kind is bool
    assert (
        FACTS["sender.authentication"].choices == METHODS == ("dmarc", "dkim", "arc", "reply_token", "none")
    )
    assert FACTS["flags.commands_require_authentication"].kind is bool

"""Commands only from senders we can authenticate (docs/security.md): forged From gets nothing done.

The mails here are built as our boundary would hand them over: its Received and
Authentication-Results headers on top of what the sender wrote. The account trusts the
authserv-id ``mx.desk.example``; DKIM and ARC checked by mailgate itself are in
``test_sender_authentication_dkim.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest

from engine.rules.explain import explain_message

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

BOUNDARY = "mx.desk.example"
TRUSTING = {"trusted_authserv_ids": [BOUNDARY]}
REQUIRED = {"commands_require_authentication": True}
ENTRY_HOP = (
    "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.desk.example (Postfix)"
    " with ESMTPS id 4Dm0 for <helpdesk@desk.example>; Mon, 2 Mar 2026 09:30:00 +0000"
)
PASS = (
    f"Authentication-Results: {BOUNDARY}; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"
)
FAIL = f"Authentication-Results: {BOUNDARY}; dkim=none; dmarc=fail (p=reject) header.from=example.com"

ITEMS = """\
calls:
  - {number: 30, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Mouse}
requests:
  - {number: 40, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Laptop}
tasks:
  - {number: 400, kind: approval, status: open, request: 40, sequence: 1, approver: fran@example.com}
"""


def mail(subject: str, sender: str, trace: Sequence[str] = (), body: str = "Fine by me.\n") -> bytes:
    """A mail as our boundary hands it over: ``trace`` (top first) above the sender's own headers."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "helpdesk@desk.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    msg.set_content(body)
    return "".join(f"{line}\n" for line in trace).encode() + msg.as_bytes()


def guarded_desk(make_desk: MakeDesk, **options: Any) -> Desk:
    """A desk whose account requires authentication for commands and trusts ``mx.desk.example``."""
    options.setdefault("flags", REQUIRED)
    options.setdefault("authentication", TRUSTING)
    return make_desk(ITEMS, **options)


def _assert_refused_unanswered(desk: Desk, result: Any, why: str) -> None:
    assert (result.outcome, result.rule) == ("refused", "command_from_unauthenticated_sender")
    assert result.reason is not None and result.reason.startswith("sender not authenticated: ")
    assert why in result.reason
    assert desk.outbox() == []
    entry = desk.ledger()[-1]
    assert entry["outcome"] == "refused"
    assert entry["detail"]["reason"] == result.reason
    assert entry["detail"]["authentication"]["authenticated"] is False


def test_forged_approval_with_failed_dmarc_is_refused_unanswered_and_the_task_unchanged(
    make_desk: MakeDesk, db_url: str
) -> None:
    desk = guarded_desk(make_desk, database=db_url)
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [FAIL, ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "dmarc=fail header.from=example.com")
    task = desk.task(400)
    assert task["status"] == "open"
    assert task["history"] == []


def test_forged_close_without_any_authentication_result_is_refused(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    result = desk.deliver_raw(mail("[CLOSE#30]", "grace@example.com", [ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "no authentication result from a trusted server")
    assert desk.call(30)["status"] == "open"


@pytest.mark.parametrize(
    ("subject", "sender"),
    [
        ("[REJECT#400]", "fran@example.com"),
        ("[MyCalls]", "grace@example.com"),
        ("[MyApprovals]", "fran@example.com"),
    ],
)
def test_forged_rejections_and_summaries_are_refused_too(
    make_desk: MakeDesk, subject: str, sender: str
) -> None:
    desk = guarded_desk(make_desk)
    result = desk.deliver_raw(mail(subject, sender, [FAIL, ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "dmarc=fail")
    assert desk.task(400)["status"] == "open"


def test_authentication_results_of_a_server_we_do_not_trust_are_ignored(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    spoofed = "Authentication-Results: mx.evil.example; dmarc=pass header.from=example.com"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [ENTRY_HOP, spoofed]))
    _assert_refused_unanswered(desk, result, "mx.evil.example (not a trusted authserv-id)")
    assert desk.task(400)["status"] == "open"


def test_our_authserv_id_below_an_untrusted_received_hop_is_ignored(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    relay = (
        "Received: from attacker.example (attacker.example [198.51.100.7]) by relay.evil.example"
        " with SMTP id 77; Mon, 2 Mar 2026 09:29:00 +0000"
    )
    written_by_the_sender = f"Authentication-Results: {BOUNDARY}; dmarc=pass header.from=example.com"
    result = desk.deliver_raw(
        mail("[APPROVE#400]", "fran@example.com", [ENTRY_HOP, relay, written_by_the_sender])
    )
    _assert_refused_unanswered(desk, result, "below the Received hop by relay.evil.example")
    assert desk.task(400)["status"] == "open"


def test_a_forged_pass_below_our_boundarys_own_verdict_is_ignored(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    forged = f"Authentication-Results: {BOUNDARY}; dmarc=pass header.from=example.com"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [FAIL, ENTRY_HOP, forged]))
    _assert_refused_unanswered(desk, result, "dmarc=fail")
    assert desk.task(400)["status"] == "open"


def test_a_trusted_pass_for_another_domain_does_not_authenticate(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    other = f"Authentication-Results: {BOUNDARY}; dmarc=pass header.from=example.net"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [other, ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "is not for example.com")


def test_genuine_trusted_dmarc_pass_approves_and_records_how(make_desk: MakeDesk, db_url: str) -> None:
    desk = guarded_desk(make_desk, database=db_url)
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [PASS, ENTRY_HOP]))
    assert (result.outcome, result.rule, result.reason) == ("approved", "approve_task", None)
    assert desk.task(400)["status"] == "approved"
    [reply] = desk.outbox()
    assert reply["to"] == "fran@example.com"
    update = next(h for h in desk.task(400)["history"] if h["kind"] == "email_update")
    assert (update["sender_authenticated"], update["sender_authentication"]) == (True, "dmarc")
    assert desk.ledger()[-1]["detail"]["authentication"] == {
        "authenticated": True,
        "method": "dmarc",
        "evidence": "dmarc=pass header.from=example.com (Authentication-Results by mx.desk.example)",
    }


def test_a_trusted_aligned_dkim_pass_without_dmarc_result_authenticates_by_dkim(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    dkim_only = f"Authentication-Results: {BOUNDARY}; dkim=pass header.d=mail.example.com header.s=s1"
    result = desk.deliver_raw(mail("[CLOSE#30]", "grace@example.com", [dkim_only, ENTRY_HOP]))
    assert result.outcome == "closed"
    closed = next(h for h in desk.call(30)["history"] if h["kind"] == "closed")
    assert closed["sender_authentication"] == "dkim"


def test_internal_hops_of_trusted_relays_keep_the_boundary_results(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk, authentication={**TRUSTING, "trusted_relays": ["*.internal.desk.example"]})
    delivery = (
        "Received: from mx.desk.example by imap3.internal.desk.example with LMTP id 9;"
        " Mon, 2 Mar 2026 09:30:01 +0000"
    )
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [delivery, PASS, ENTRY_HOP]))
    assert result.outcome == "approved"


def test_an_internal_hop_nobody_listed_ends_the_trusted_part(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    delivery = "Received: from mx.desk.example by imap3.internal.desk.example with LMTP id 9; Mon, 2 Mar 2026"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [delivery, PASS, ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "below the Received hop by imap3.internal.desk.example")


def test_with_the_flag_off_a_forged_approval_acts_as_before(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk, flags={})
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [FAIL, ENTRY_HOP]))
    assert (result.outcome, result.rule) == ("approved", "approve_task")
    assert desk.task(400)["status"] == "approved"
    update = next(h for h in desk.task(400)["history"] if h["kind"] == "email_update")
    assert (update["sender_authenticated"], update["sender_authentication"]) == (False, "none")


def test_new_calls_and_updates_still_work_and_record_whether_the_sender_was_authenticated(
    make_desk: MakeDesk,
) -> None:
    desk = guarded_desk(make_desk)
    logged = desk.deliver_raw(mail("Printer jammed", "ada@example.com", [FAIL, ENTRY_HOP]))
    assert logged.outcome == "logged"
    [entry] = desk.call(logged.number or 0)["history"]
    assert (entry["kind"], entry["sender_authenticated"], entry["sender_authentication"]) == (
        "logged",
        False,
        "none",
    )
    updated = desk.deliver_raw(mail("[CALL#30] more", "ada@example.com", [PASS, ENTRY_HOP]))
    assert updated.outcome == "updated"
    [update] = desk.call(30)["history"]
    assert (update["sender_authenticated"], update["sender_authentication"]) == (True, "dmarc")


def test_explain_shows_the_facts_and_the_evidence(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    raw = mail("[APPROVE#400]", "fran@example.com", [FAIL, ENTRY_HOP])
    explanation = explain_message(desk.runtime, desk.account, raw)
    assert explanation.facts["sender.authenticated"] is False
    assert explanation.facts["sender.authentication"] == "none"
    assert explanation.rule == "command_from_unauthenticated_sender"
    shown = explanation.to_json()["authentication"]
    assert (
        shown["evidence"] == "dmarc=fail header.from=example.com (Authentication-Results by mx.desk.example)"
    )
    assert "sender authentication: none (dmarc=fail" in explanation.to_text()
    assert desk.ledger() == []


def test_a_pack_may_tell_the_person_the_from_names_instead(make_desk: MakeDesk) -> None:
    pack = """\
        extends: default
        rules:
          - name: command_from_unauthenticated_sender
            when:
              intent: [approve_task, reject_task, close_call]
              flags.commands_require_authentication: true
              sender.authenticated: false
            outcome: refused
            then:
              - {do: give_reason, text: "forged? {{ authentication_method }}: {{ authentication }}"}
              - {do: reply, template: sender_not_authenticated}
        """
    desk = guarded_desk(make_desk, rule_pack="rules/local.yaml", files={"rules/local.yaml": pack})
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [FAIL, ENTRY_HOP]))
    assert result.outcome == "refused"
    assert (
        result.reason
        == "forged? none: dmarc=fail header.from=example.com (Authentication-Results by mx.desk.example)"
    )
    [notice] = desk.outbox()
    assert notice["to"] == "fran@example.com"
    assert "could not confirm that you sent it" in notice["body"]


def test_a_dmarc_none_verdict_leaves_an_aligned_dkim_pass_to_decide(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    no_policy = f"Authentication-Results: {BOUNDARY}; dkim=pass header.d=example.com; dmarc=none"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [no_policy, ENTRY_HOP]))
    assert result.outcome == "approved"
    assert desk.ledger()[-1]["detail"]["authentication"]["method"] == "dkim"


def test_a_header_from_written_as_an_address_names_its_domain(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    as_address = f"Authentication-Results: {BOUNDARY}; dmarc=pass header.from=fran@example.com"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [as_address, ENTRY_HOP]))
    assert result.outcome == "approved"


@pytest.mark.parametrize("name", ["Subject", "subject", "Subject "])
def test_a_second_subject_above_the_one_a_signature_covers_is_never_authenticated(
    make_desk: MakeDesk, name: str
) -> None:
    """A replayed mail of Fran's, signed and passed by our boundary, with a command prepended.

    DKIM signs the bottom-most instance of a header; the boundary's verdict holds for that one,
    while the subject read is the topmost.
    """
    desk = guarded_desk(make_desk)
    replayed = mail("Lunch on Friday?", "fran@example.com")
    result = desk.deliver_raw(f"{PASS}\n{ENTRY_HOP}\n{name}: [APPROVE#400]\n".encode() + replayed)
    _assert_refused_unanswered(desk, result, "the mail has 2 Subject headers")
    assert desk.task(400)["status"] == "open"


def test_a_repeated_threading_header_leaves_the_sender_unauthenticated(make_desk: MakeDesk) -> None:
    desk = guarded_desk(make_desk)
    twice = mail("[CLOSE#30]", "grace@example.com").replace(b"Message-ID:", b"Message-ID: <a@b>\nMessage-ID:")
    result = desk.deliver_raw(f"{PASS}\n{ENTRY_HOP}\n".encode() + twice)
    _assert_refused_unanswered(desk, result, "the mail has 2 Message-ID headers")
    assert desk.call(30)["status"] == "open"


@pytest.mark.parametrize(
    "results",
    [
        "dmarc=fail header.from=example.com; dmarc=pass header.from=example.com",
        "dmarc=pass header.from=example.com; dmarc=fail header.from=example.com",
        "dmarc=none header.from=example.com; dmarc=pass",  # as a verdict that copied From unescaped
        "dmarc=pass header.from=example.com; dmarc=temperror header.from=example.com",
    ],
)
def test_a_dmarc_pass_beside_another_result_for_the_from_domain_does_not_authenticate(
    make_desk: MakeDesk, results: str
) -> None:
    desk = guarded_desk(make_desk)
    header = f"Authentication-Results: {BOUNDARY}; {results}"
    result = desk.deliver_raw(mail("[APPROVE#400]", "fran@example.com", [header, ENTRY_HOP]))
    _assert_refused_unanswered(desk, result, "dmarc=")
    assert desk.task(400)["status"] == "open"

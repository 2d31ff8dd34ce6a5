"""The stored decision trace is exactly the JSON ``explain --json`` reports, however it is encoded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from engine.rules.explain import Explanation, trace_json

HOSTILE = 'a "quote", a \\ backslash, \x00 a NUL, ], "rules_tried": [{"rule": "x"}], é ✓ \U0001f600'


def _explanation(subject: str) -> Explanation:
    return Explanation(
        account="helpdesk",
        pack="default",
        subject=subject,
        facts={
            "intent": "new_call",
            "number": None,
            "sender.known": True,
            "when": datetime(2026, 3, 2, tzinfo=UTC),
        },
        tried=[
            ("delete_fatal_bounce", False, "fails: message.is_bounce == True"),
            ("odd", False, HOSTILE),
            ("log_new_call", True, ""),
        ],
        rule="log_new_call",
        outcome="logged",
        steps=[("create_call", True, ""), ("send_reply", False, "{'template': 'new_call'}")],
        notes=[HOSTILE],
    )


def test_the_trace_text_is_what_json_dumps_writes_for_explains_json() -> None:
    for subject in ("Printer jams", HOSTILE, ""):
        data = _explanation(subject).to_json()
        assert trace_json(data) == json.dumps(data, default=str)
        assert trace_json(data) == json.dumps(data, default=str)  # the rules tried again, from the cache


def test_a_trace_with_no_rule_tried_is_what_json_dumps_writes() -> None:
    data = Explanation(account="helpdesk", pack="default", subject=HOSTILE).to_json()
    assert trace_json(data) == json.dumps(data, default=str)


def test_a_stored_trace_is_what_json_dumps_writes_for_the_decisions_explanation() -> None:
    import zlib

    from engine.mail.authentication import SenderAuthentication
    from engine.resources import rules_dir
    from engine.rules.decision import Decision
    from engine.rules.explain import decision_trace, explanation_of
    from engine.rules.gather import Situation
    from engine.rules.pack import load_pack
    from engine.rules.subject import Intent, ParsedSubject

    pack = load_pack("default", rules_dir())
    for intent, known in (("unrecognised", True), ("update_call", False), ("unrecognised", True)):
        facts = {"intent": intent, "number": 7, "sender.known": known, "flags.auto_reply": True}
        authentication = SenderAuthentication(True, "dkim", HOSTILE)
        situation = Situation(facts, None, None, None, authentication, notes=(HOSTILE,))
        choice = pack.choose(facts)
        subject = ParsedSubject(Intent(intent), 7, True, HOSTILE, (), ())
        decision = Decision(subject, situation, choice.rule, choice.steps, choice.tried)
        data = explanation_of(decision, "helpdesk", "default", HOSTILE).to_json()

        stored = decision_trace(decision, "helpdesk", "default", HOSTILE)

        assert zlib.decompress(stored).decode() == json.dumps(data, default=str)


def test_a_stored_trace_of_a_decision_with_no_rule_is_what_json_dumps_writes() -> None:
    import zlib

    from engine.rules.decision import Decision
    from engine.rules.explain import decision_trace, explanation_of
    from engine.rules.gather import Situation
    from engine.rules.subject import Intent, ParsedSubject

    for notes in ((), (HOSTILE,)):
        situation = Situation({"intent": "unrecognised"}, None, None, None, None, notes=notes)  # type: ignore[arg-type]
        decision = Decision(
            ParsedSubject(Intent.UNRECOGNISED, None, False, "", (), ()), situation, None, (), ()
        )
        data = explanation_of(decision, "helpdesk", "default", HOSTILE).to_json()
        stored = decision_trace(decision, "helpdesk", "default", HOSTILE)
        assert zlib.decompress(stored).decode() == json.dumps(data, default=str)

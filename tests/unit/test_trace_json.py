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

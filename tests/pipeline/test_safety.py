"""Never lose a mail, never act twice: duplicates, quarantine, rollback, time limit, replay."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipeline_desk import Desk, build_desk, make_mail

from engine.actions.base import Action, ActionContext
from engine.actions.registry import register_action
from engine.errors import MailgateError


@register_action
@dataclass(frozen=True)
class SleepForTest(Action):
    """Sleeps, to exceed the time limit."""

    name = "test_sleep"
    seconds: float = 5.0

    def run(self, ctx: ActionContext) -> None:
        """Sleep."""
        time.sleep(self.seconds)


@register_action
@dataclass(frozen=True)
class FailForTest(Action):
    """Fails, to prove that a failing chain leaves nothing behind."""

    name = "test_fail"

    def run(self, ctx: ActionContext) -> None:
        """Fail."""
        raise MailgateError("the test action failed on purpose")


SLOW_PACK = """\
extends: default
rules:
  - name: slow_subjects
    when: {intent: unrecognised}
    outcome: logged
    then:
      - do: log_call
      - {do: test_sleep, seconds: 5}
    before: log_new_call
"""

FAILING_PACK = """\
extends: default
rules:
  - name: log_then_fail
    when: {intent: unrecognised}
    outcome: logged
    then:
      - do: log_call
      - {do: reply, template: call_logged}
      - do: test_fail
"""

NARROW_PACK = """\
extends: default
remove: [log_new_call]
"""


def test_same_message_twice_is_duplicate_without_second_effect(desk: Desk) -> None:
    first = desk.process(make_mail())
    second = desk.process(make_mail())
    assert (first.outcome, second.outcome) == ("logged", "duplicate")
    assert desk.call(101) is not None and desk.call(102) is None
    assert len(desk.outbox()) == 1


def test_message_without_message_id_is_keyed_by_its_bytes(desk: Desk) -> None:
    raw = make_mail(message_id=None)
    first, second = desk.process(raw), desk.process(raw)
    assert first.key.startswith("sha256:") and first.outcome == "logged"
    assert second.outcome == "duplicate"
    other = desk.process(make_mail(message_id=None, body="Another problem."))
    assert other.outcome == "logged"


def test_same_message_id_in_another_account_is_processed_there(desk: Desk) -> None:
    assert desk.process(make_mail(), "helpdesk").outcome == "logged"
    assert desk.process(make_mail(), "second").outcome == "logged"
    assert desk.call(102) is not None


def test_broken_mail_is_quarantined_whole_with_its_reason(desk: Desk) -> None:
    raw = b"To: helpdesk@example.com\nSubject: no sender\nMessage-ID: <nofrom@x>\n\nbody\n"
    result = desk.process(raw)
    assert result.outcome == "quarantined"
    assert result.reason and "From" in result.reason
    [entry] = desk.quarantine()
    assert entry["reason"] == result.reason and entry["status"] == "held"
    assert entry["message_key"] == "nofrom@x"
    assert desk.ledger()[0]["outcome"] == "quarantined"


def test_quarantined_message_delivered_again_is_a_duplicate(desk: Desk) -> None:
    raw = b"To: helpdesk@example.com\nSubject: no sender\nMessage-ID: <nofrom@x>\n\nbody\n"
    desk.process(raw)
    assert desk.process(raw).outcome == "duplicate"
    assert len(desk.quarantine()) == 1


def test_failing_action_rolls_back_the_whole_message_and_quarantines_it(tmp_path: Path) -> None:
    desk = build_desk(tmp_path, pack="failing", pack_text=FAILING_PACK)
    result = desk.process(make_mail())
    assert result.outcome == "quarantined"
    assert result.reason is not None and "failed on purpose" in result.reason
    assert desk.call(101) is None, "the call logged before the failure must be rolled back"
    assert desk.outbox() == [], "the reply queued before the failure must be rolled back"


def test_message_over_the_time_limit_is_quarantined_and_the_next_is_processed(tmp_path: Path) -> None:
    desk = build_desk(tmp_path, pack="slow", pack_text=SLOW_PACK, limit=0.5)
    slow = desk.process(make_mail(subject="please hang"))
    assert slow.outcome == "quarantined"
    assert slow.reason == "time limit of 0.5 s exceeded"
    assert desk.call(101) is None
    quick = desk.process(make_mail(subject="[CALL#100] more info", message_id="<m2@example.com>"))
    assert quick.outcome == "updated"


def test_message_no_rule_matches_is_quarantined(tmp_path: Path) -> None:
    desk = build_desk(tmp_path, pack="narrow", pack_text=NARROW_PACK)
    result = desk.process(make_mail())
    assert result.outcome == "quarantined"
    assert result.reason is not None and "no rule of pack 'narrow' matched" in result.reason


def test_quarantine_retry_after_fixing_the_pack_releases_the_message(tmp_path: Path) -> None:
    from engine.pipeline import retry_quarantined

    desk = build_desk(tmp_path, pack="narrow", pack_text=NARROW_PACK)
    held = desk.process(make_mail())
    assert held.quarantine_id is not None
    still = retry_quarantined(desk.runtime, held.quarantine_id)
    assert not still.released and still.result is not None and still.result.outcome == "quarantined"
    assert [e["status"] for e in desk.quarantine()] == ["held"], "a failed retry keeps one held entry"
    (tmp_path / "rules" / "narrow.yaml").write_text("extends: default\n")
    desk.reload()
    done = retry_quarantined(desk.runtime, held.quarantine_id)
    assert done.released and done.result is not None and done.result.outcome == "logged"
    assert desk.call(101) is not None
    assert [e["status"] for e in desk.quarantine()] == ["released"]
    assert [e["outcome"] for e in desk.ledger()] == ["logged"]
    again = retry_quarantined(desk.runtime, held.quarantine_id)
    assert again.error is not None and "already released" in again.error


def test_quarantine_retry_of_unknown_entry_says_so(desk: Desk) -> None:
    from engine.pipeline import retry_quarantined

    assert retry_quarantined(desk.runtime, 999).error == "no quarantine entry 999"


def test_huge_header_block_is_quarantined(desk: Desk) -> None:
    raw = b"From: ada@example.com\nSubject: big\nX-Junk: " + b"a" * 1_200_000 + b"\n\nbody\n"
    result = desk.process(raw)
    assert result.outcome == "quarantined"
    assert result.reason is not None and "header" in result.reason


def test_25_mb_attachment_is_attached_whole(desk: Desk) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.com", "helpdesk@example.com", "[CALL#100] logs"
    msg["Message-ID"] = "<big@example.com>"
    msg.set_content("the logs")
    payload = bytes(range(256)) * (25 * 1024 * 4)
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename="logs.bin")
    result = desk.process(msg.as_bytes())
    assert result.outcome == "updated"
    call = desk.call(100)
    assert call is not None
    [attachment] = call["attachments"]  # type: ignore[misc]
    assert attachment["size"] == len(payload) == 25 * 1024 * 1024


def test_path_like_attachment_name_is_stored_without_directories(desk: Desk) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.com", "helpdesk@example.com", "[CALL#100] file"
    msg["Message-ID"] = "<path@example.com>"
    msg.set_content("see file")
    msg.add_attachment(b"x", maintype="text", subtype="plain", filename="../../etc/passwd")
    assert desk.process(msg.as_bytes()).outcome == "updated"
    call = desk.call(100)
    assert call is not None
    assert [a["filename"] for a in call["attachments"]] == ["passwd"]  # type: ignore[union-attr]


def test_html_only_mail_becomes_a_readable_description(desk: Desk) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.com", "helpdesk@example.com", "Screen flickers"
    msg["Message-ID"] = "<html@example.com>"
    msg.set_content(
        "<html><body><p>My screen <b>flickers</b> &amp; hums.</p><ul><li>Dell</li></ul></body></html>",
        subtype="html",
    )
    assert desk.process(msg.as_bytes()).outcome == "logged"
    call = desk.call(101)
    assert call is not None
    description = str(call["description"])
    assert "My screen flickers & hums." in description and "<" not in description


def test_unknown_charset_is_processed_not_crashed(desk: Desk) -> None:
    raw = (
        b"From: ada@example.com\nTo: helpdesk@example.com\nSubject: odd charset\nMessage-ID: <cs@x>\n"
        b'Content-Type: text/plain; charset="X-UNKNOWN"\n\nCaf\xe9 machine is broken\n'
    )
    assert desk.process(raw).outcome == "logged"
    call = desk.call(101)
    assert call is not None and "machine is broken" in str(call["description"])


def test_explain_writes_nothing(desk: Desk) -> None:
    from engine.rules.explain import explain_message

    explanation = explain_message(desk.runtime, desk.runtime.config.account("helpdesk"), make_mail())
    assert explanation.rule == "log_new_call" and explanation.outcome == "logged"
    assert [name for name, _, _ in explanation.steps] == ["log_call", "attach_files", "reply"]
    assert desk.ledger() == [] and desk.outbox() == [] and desk.call(101) is None
    assert desk.process(make_mail()).outcome == "logged"


def test_explain_and_process_agree_on_the_rule_and_the_facts(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``decide`` for both: for each mail, explain shows the rule, facts and steps process acts on."""
    import engine.pipeline
    from engine.rules.decision import Decision, decide
    from engine.rules.explain import explain_message

    acted_on: list[Decision] = []

    def recording_decide(*args: Any, **kwargs: Any) -> Decision:
        decision = decide(*args, **kwargs)
        acted_on.append(decision)
        return decision

    monkeypatch.setattr(engine.pipeline, "decide", recording_decide)
    account = desk.runtime.config.account("helpdesk")
    bounce = (Path(__file__).parents[1] / "fixtures" / "mail" / "bounce_postfix_501.eml").read_bytes()
    mails = [
        make_mail("Printer broken", message_id="<agree-1@example.com>"),
        make_mail("RE: [CALL#100] it smokes now", message_id="<agree-2@example.com>"),
        make_mail("RE: [CALL#999] which call?", message_id="<agree-3@example.com>"),
        make_mail("[CLOSE#100] fixed", sender="grace@example.com", message_id="<agree-4@example.com>"),
        make_mail("RE: [CALL#100] it is back", message_id="<agree-5@example.com>"),
        make_mail("hello", sender="stranger@example.org", message_id="<agree-6@example.com>"),
        bounce,
    ]
    rules = []
    for raw in mails:
        explanation = explain_message(desk.runtime, account, raw)
        result = desk.process(raw)
        (decision,) = acted_on
        acted_on.clear()
        assert decision.rule is not None and decision.tried  # traced: the ledger keeps the trace
        assert explanation.rule == result.rule == decision.rule.name
        assert explanation.outcome == result.outcome
        assert explanation.facts == dict(decision.facts)
        assert [(name, runs) for name, runs, _ in explanation.steps] == [
            (step.action.name, runs) for step, runs in decision.steps
        ]
        rules.append(result.rule)
    assert len(set(rules)) >= 6, rules  # the mails exercise different rules, not one rule seven times


def test_unavailable_database_raises_and_quarantines_nothing(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from engine.storage.db import DatabaseError

    desk = build_desk(tmp_path)
    locker = sqlite3.connect(tmp_path / "mailgate.sqlite", timeout=1)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the database: every write waits, then fails
    try:
        with pytest.raises(DatabaseError, match="database unavailable"):
            desk.process(make_mail())
    finally:
        locker.rollback()
        locker.close()
    assert desk.quarantine() == [] and desk.ledger() == []
    assert desk.process(make_mail()).outcome == "logged", "once the database is back the mail is processed"

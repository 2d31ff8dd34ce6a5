"""The README's "Who may do what with the default pack": each statement, and each one-line change it shows.

The lines are taken from README.md as written (a test fails if one is edited away), applied to a
desk, and a mail shows the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ruamel.yaml import YAML

if TYPE_CHECKING:
    from conftest import Desk, MakeDesk

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
ONLY_PEOPLE_ON_RECORD = (
    "- {name: calls_only_from_people_on_record, before: log_new_call, "
    "when: {intent: unrecognised, sender.known: false}, outcome: ignored}"
)
TAKE_OVER = "- {email: grace@example.com, analyst: true, take_over: true}"
ASSIGN_NEW_CALLS = "call_template: {assigned_analyst: grace@example.com}"
NOBODY_CLOSES = "remove: [close_call]"
SUMMARIES_FOR_EVERYONE_ON_RECORD = "remove: [summary_from_non_analyst]"
APPROVAL = """\
requests:
  - {number: 70, status: open, user: ada@example.com, summary: Laptop}
tasks:
  - {number: 71, kind: approval, status: open, request: 70, approver: bob@example.com, summary: Approve it}
"""


def shown(line: str) -> str:
    """``line`` as the README shows it (inside a yaml block, indented); fails if it is not there."""
    assert f"  {line}\n" in README, f"README.md no longer shows: {line}"
    return line


def local_pack(*lines: str) -> dict[str, str]:
    """A ``rules/local.yaml`` that extends the default with these README lines."""
    rules = [line for line in lines if line.startswith("- ")]
    others = [line for line in lines if not line.startswith("- ")]
    text = "extends: default\n" + "".join(f"{line}\n" for line in others)
    if rules:
        text += "rules:\n" + "".join(f"  {line}\n" for line in rules)
    return {"rules/local.yaml": text}


def log_a_call(desk: Desk) -> int:
    """Ada logs a call by mail; its number."""
    logged = desk.deliver("Printer jams", sender="ada@example.com")
    assert logged.outcome == "logged" and logged.number is not None
    return logged.number


def test_any_sender_may_log_a_call(make_desk: MakeDesk) -> None:
    desk = make_desk()
    result = desk.deliver("My screen is dark", sender="stranger@elsewhere.example")
    assert result.outcome == "logged"
    assert [m["type"] for m in desk.outbox_to("stranger@elsewhere.example")] == ["call_logged"]


def test_the_readme_rule_takes_calls_only_from_people_on_record(make_desk: MakeDesk) -> None:
    desk = make_desk(rule_pack="rules/local.yaml", files=local_pack(shown(ONLY_PEOPLE_ON_RECORD)))
    stranger = desk.deliver("My screen is dark", sender="stranger@elsewhere.example")
    assert (stranger.outcome, stranger.rule) == ("ignored", "calls_only_from_people_on_record")
    assert desk.outbox() == []
    assert desk.deliver("Printer jams", sender="ada@example.com").outcome == "logged"


def test_an_analyst_cannot_close_a_call_logged_by_email_unless_assigned_or_with_take_over(
    make_desk: MakeDesk,
) -> None:
    desk = make_desk()
    number = log_a_call(desk)
    refused = desk.deliver(f"[CLOSE#{number}] done", sender="grace@example.com")
    assert refused.outcome == "refused"
    assert desk.call(number)["status"] == "open"
    taker = desk.deliver(f"[CLOSE#{number}] done", sender="linus@example.com")  # take_over: true
    assert taker.outcome == "closed"


def test_the_readme_take_over_line_lets_the_analyst_close_any_call(make_desk: MakeDesk) -> None:
    desk = make_desk(f"people:\n  {shown(TAKE_OVER)}\n")
    number = log_a_call(desk)
    assert desk.deliver(f"[CLOSE#{number}] done", sender="grace@example.com").outcome == "closed"


def test_the_readme_call_template_assigns_new_calls_so_their_analyst_may_close_them(
    make_desk: MakeDesk,
) -> None:
    template = YAML(typ="safe").load(shown(ASSIGN_NEW_CALLS))["call_template"]
    desk = make_desk(call_template=template)
    number = log_a_call(desk)
    assert desk.call(number)["assigned_analyst"] == "grace@example.com"
    assert desk.deliver(f"[CLOSE#{number}] done", sender="grace@example.com").outcome == "closed"
    other = log_a_call(desk)
    assert desk.deliver(f"[CLOSE#{other}] done", sender="alan@example.com").outcome == "refused"


def test_the_readme_remove_close_call_lets_nobody_close_by_mail(make_desk: MakeDesk) -> None:
    desk = make_desk(rule_pack="rules/local.yaml", files=local_pack(shown(NOBODY_CLOSES)))
    number = log_a_call(desk)
    for sender in ("ada@example.com", "linus@example.com"):  # its user, a take-over analyst
        refused = desk.deliver(f"[CLOSE#{number}] done", sender=sender)
        assert (refused.outcome, refused.rule) == ("refused", "close_insufficient_permission")
    assert desk.call(number)["status"] == "open"


def test_a_users_summary_request_is_refused_and_a_strangers_ignored(make_desk: MakeDesk) -> None:
    desk = make_desk(APPROVAL)
    user = desk.deliver("[MyApprovals]", sender="bob@example.com")
    assert (user.outcome, user.rule) == ("refused", "summary_from_non_analyst")
    [answer] = desk.outbox_to("bob@example.com")
    assert "Reason: Insufficient Permission" in answer["body"]
    stranger = desk.deliver("[MyCalls]", sender="stranger@elsewhere.example")
    assert stranger.outcome == "ignored"


def test_the_readme_remove_lets_a_user_who_approves_ask_for_approvals(make_desk: MakeDesk) -> None:
    desk = make_desk(
        APPROVAL, rule_pack="rules/local.yaml", files=local_pack(shown(SUMMARIES_FOR_EVERYONE_ON_RECORD))
    )
    summary = desk.deliver("[MyApprovals]", sender="bob@example.com")
    assert summary.outcome == "summary"
    [sent] = desk.outbox_to("bob@example.com")
    assert "71" in sent["body"]

"""A stranger cannot tell which numbers exist: a command or update naming an item, from a sender
who may not act on it, gets the same outcome and the same answer whether or not the item exists,
down to the answer's Message-ID (its reply token names no item)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.identity.reply_tokens import read_token

if TYPE_CHECKING:
    from conftest import MakeDesk

ITEMS = """\
calls:
  - {number: 10, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Secret}
  - {number: 12, status: closed, user: ada@example.com, assigned_analyst: grace@example.com, summary: Old}
requests:
  - {number: 50, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Phone}
tasks:
  - {number: 500, kind: task, status: open, request: 50, sequence: 1, assigned_analyst: alan@example.com}
  - {number: 501, kind: approval, status: open, request: 50, sequence: 1, approver: fran@example.com}
  - {number: 502, kind: approval, status: approved, request: 50, sequence: 1, approver: fran@example.com}
"""
MISSING = 987654
STRANGER = "stranger@elsewhere.example"

# (subject template, a number that exists)
COMMANDS = [
    ("[CLOSE#{n}]", 10),
    ("[CLOSE#{n}]", 12),  # closed
    ("[APPROVE#{n}]", 501),
    ("[REJECT#{n}]", 501),
    ("[APPROVE#{n}]", 502),  # already decided
    ("[APPROVE#{n}]", 500),  # not an approval
    ("[CALL#{n}] any news?", 10),
    ("[CALL#{n}] any news?", 12),
    ("[REQ#{n}] any news?", 50),
    ("[TASK#{n}] any news?", 500),
]
FLAGS = [{}, {"log_new_call_on_invalid_number": True, "update_closed_calls": True}]


def _seen_by_the_stranger(make_desk: MakeDesk, subject: str, number: int, flags: dict[str, bool]) -> Any:
    """What the stranger can observe: the outcome and every answer, the number written as N."""
    desk = make_desk(ITEMS, flags=flags)
    result = desk.deliver(subject.format(n=number), sender=STRANGER)
    answers = []
    for row in desk.outbox_to(STRANGER):
        token = read_token(row["message_id"])
        assert token is not None
        answers.append(
            (
                row["type"],
                row["subject"].replace(str(number), "N"),
                row["body"].replace(str(number), "N"),
                row["message_id"].split("@")[1],
                token.item,
            )
        )
    return result.outcome, result.rule, answers


@pytest.mark.parametrize("flags", FLAGS, ids=["default flags", "invalid numbers logged"])
@pytest.mark.parametrize(("subject", "existing"), COMMANDS, ids=[f"{s.format(n=n)}" for s, n in COMMANDS])
def test_a_stranger_gets_the_same_outcome_and_answer_whether_or_not_the_number_exists(
    make_desk: MakeDesk, subject: str, existing: int, flags: dict[str, bool]
) -> None:
    exists = _seen_by_the_stranger(make_desk, subject, existing, flags)
    missing = _seen_by_the_stranger(make_desk, subject, MISSING, flags)
    assert exists == missing
    for *_, item in exists[2]:
        assert item is None  # the answer's token names no item


def test_the_refusal_names_the_number_as_written_and_nothing_about_the_item(make_desk: MakeDesk) -> None:
    desk = make_desk(ITEMS)
    desk.deliver("[CLOSE#10]", sender=STRANGER)
    [answer] = desk.outbox_to(STRANGER)
    assert answer["subject"] == "[CALL#10] Call 10: your request was not carried out"
    assert "Secret" not in answer["body"]
    assert (answer["entity"], answer["number"]) == (None, None)


def test_a_known_sender_still_learns_what_they_may_know(make_desk: MakeDesk) -> None:
    """The identification comes first only for strangers: ada's unknown number still logs a call."""
    desk = make_desk(ITEMS, flags={"log_new_call_on_invalid_number": True})
    assert desk.deliver(f"[CLOSE#{MISSING}]").outcome == "logged"
    assert desk.deliver("[CLOSE#10]").outcome == "closed"


# commands that name an item, from a known address whose mail is not authenticated (a forged From)
UNAUTHENTICATED = [("[CLOSE#{n}]", 10, "ada@example.com"), ("[APPROVE#{n}]", 501, "fran@example.com")]


@pytest.mark.parametrize(("subject", "existing", "forged"), UNAUTHENTICATED, ids=["close", "approve"])
def test_an_unauthenticated_sender_gets_the_same_outcome_and_answer_whether_or_not_the_number_exists(
    make_desk: MakeDesk, subject: str, existing: int, forged: str
) -> None:
    seen = []
    for number in (existing, MISSING):
        desk = make_desk(ITEMS, flags={"commands_require_authentication": True})
        result = desk.deliver(subject.format(n=number), sender=forged)
        seen.append((result.outcome, result.rule, desk.outbox()))
    assert seen[0] == seen[1] == ("refused", "command_from_unauthenticated_sender", [])


@pytest.mark.parametrize("sender", [STRANGER, "ada@example.com"])
@pytest.mark.parametrize("subject", ["[CLOSE#99999999999]", "Please call 4155550123 about the printer"])
def test_a_number_no_item_can_have_is_ordinary_text_on_every_database(
    make_desk: MakeDesk, db_url: str, subject: str, sender: str
) -> None:
    """Not a database error (PostgreSQL's item numbers are 32-bit): the mail logs a call."""
    desk = make_desk(ITEMS, database=db_url)
    result = desk.deliver(subject, sender=sender)
    assert (result.outcome, result.rule) == ("logged", "log_new_call"), result.reason

"""The service's log as an admin's tools read it: with ``--log-format json`` every line is one JSON
object with the keys of the text line, and each message makes one line, whatever the format."""

from __future__ import annotations

import json

from e2e_desk import Mailbox, MakeDesk, account_yaml, connector_yaml, events, mail, without_sender


def test_json_log_lines_have_the_keys_of_the_text_lines_and_each_message_has_one_line(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")))
    mailbox.append(mail("Printer on fire", message_id="t1@ex"), without_sender("t2@ex"))
    as_text = desk.mailgate("-v", "run", "--once")
    mailbox.append(mail("Scanner on fire", message_id="j1@ex"), without_sender("j2@ex"))
    as_json = desk.mailgate("-v", "--log-format", "json", "run", "--once")
    assert (as_text.returncode, as_json.returncode) == (0, 0), as_text.stderr + as_json.stderr

    for stderr, keys in ((as_text.stderr, ("t1@ex", "t2@ex")), (as_json.stderr, ("j1@ex", "j2@ex"))):
        for key in keys:  # one log line per message, whatever its outcome
            assert sum(key in line for line in stderr.splitlines()) == 1, stderr
    records = [json.loads(line) for line in as_json.stderr.splitlines()]  # every line is one object
    assert all({"time", "level", "logger"} <= record.keys() for record in records)
    json_events = [record for record in records if "event" in record]
    text_events = events(as_text.stderr)

    def shape(found: list[dict[str, object]]) -> list[tuple[str, object, list[str]]]:
        skip = {"time", "level", "logger"}
        return [(str(e["event"]), e.get("outcome"), sorted(set(e) - skip)) for e in found]

    assert shape(json_events) == shape(text_events)  # type: ignore[arg-type]
    assert {e["event"] for e in json_events} >= {"processed", "polled"}
    [held] = [e for e in json_events if e.get("outcome") == "quarantined"]
    assert (held["level"], held["account"], held["key"]) == ("WARNING", "helpdesk", "j2@ex")
    assert held["reason"] and held["number"] is None
    [logged] = [e for e in json_events if e.get("outcome") == "logged"]
    assert (logged["level"], logged["entity"], type(logged["number"])) == ("INFO", "call", int)

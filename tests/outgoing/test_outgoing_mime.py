"""What arrives at the SMTP server: headers, both parts, threading, the tag, and the recorded state."""

from __future__ import annotations

import re

from outgoing_desk import DESK_ADDRESS, T0, MakeDesk, StartServer, plain_server

from engine.mail.message import parse_message
from engine.outgoing.compose import compose, message_bytes, route_for


def test_an_auto_reply_arrives_as_threaded_utf8_text_and_html_with_the_tag(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    logged = desk.deliver("Monitor flickers", body="It flickers <badly>.\n")
    [incoming] = [e for e in desk.ledger() if e.outcome == "logged"]

    report = desk.drain()

    assert report.count("sent") == 1
    [arrival] = server.handler.arrived
    mail = arrival.message
    assert arrival.mail_from == DESK_ADDRESS
    assert arrival.rcpt_tos == ("ada@example.com",)
    assert mail["To"] == "ada@example.com"
    assert mail["From"].addresses[0].addr_spec == DESK_ADDRESS
    assert mail["From"].addresses[0].display_name == "Désk"
    assert mail["Subject"] == f"[CALL#{logged.number}] Call {logged.number} has been logged"
    assert re.fullmatch(r"<mailgate\.[0-9a-f]{24}\.call\d+\.[0-9a-f]{32}@desk\.example>", mail["Message-ID"])
    assert mail["In-Reply-To"] == f"<{incoming.message_id}>"
    assert mail["References"] == f"<{incoming.message_id}>"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["Date"] is not None
    assert mail.get_content_type() == "multipart/alternative"
    text, html = arrival.part("plain"), arrival.part("html")
    assert f"logged as call {logged.number}: Monitor flickers" in text
    assert "Désk" in text and "Désk" in html
    assert f"<p>Your email has been logged as call {logged.number}: Monitor flickers</p>" in html
    for part in mail.get_body(preferencelist=("plain",)), mail.get_body(preferencelist=("html",)):
        assert part is not None and part.get_content_charset() == "utf-8"
    assert max(arrival.data) < 128, "the message must be 7-bit clean on the wire"


def test_a_sent_message_records_the_servers_reply_and_time(smtp: StartServer, make_desk: MakeDesk) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    [row] = desk.rows()
    assert row.status == "sent"
    assert row.server_reply == "250 2.0.0 Ok: queued as Q1"
    assert row.sent_via == "main"
    assert row.sent_at is not None and row.sent_at.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert row.attempts == 1
    assert row.last_error is None


def test_a_notification_is_auto_generated_and_not_threaded(smtp: StartServer, make_desk: MakeDesk) -> None:
    server = smtp()
    desk = make_desk(
        plain_server(server),
        account={"flags": {"auto_reply": False}},
        top={"messaging": {"email_at_update_via_email_in": True}},
    )
    desk.deliver("[CALL#12] toner is low too")

    desk.drain()

    [arrival] = server.handler.arrived
    assert arrival.rcpt_tos == ("grace@example.com",)
    assert arrival.message["Auto-Submitted"] == "auto-generated"
    assert arrival.message["In-Reply-To"] is None
    assert arrival.message["Subject"].startswith("[CALL#12] ")


def test_a_summary_renders_its_items_as_a_table_in_text_and_html(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("[MyCalls]", sender="Grace <grace@example.com>")

    desk.drain()

    [arrival] = server.handler.arrived
    assert arrival.rcpt_tos == ("grace@example.com",)
    text, html = arrival.part("plain"), arrival.part("html")
    assert re.search(r"Number\s+Status\s+Last update\s+Summary", text)
    assert re.search(r"12\s+open\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+Printer jams", text)
    assert re.search(r"15\s+open\s+.*VPN <drops> hourly", text)
    assert "<th>Number</th><th>Status</th><th>Summary</th><th>Last update</th>" in html
    assert "<td>12</td><td>open</td><td>Printer jams</td>" in html
    assert "<td>VPN &lt;drops&gt; hourly</td>" in html, "values in the HTML part are escaped"


def test_a_summary_goes_to_the_address_on_record_never_to_a_reply_to(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("[MyCalls]", sender="grace@example.com", headers={"Reply-To": "attacker@evil.example"})

    desk.drain()

    assert [a.rcpt_tos for a in server.handler.arrived] == [("grace@example.com",)]


def test_a_sent_auto_reply_is_recognised_as_ours_if_it_comes_back(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    """Our own reply, bounced back or forwarded by a list, is machine mail (X-Loop names our address)."""
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("Monitor flickers")
    desk.drain()

    [arrival] = server.handler.arrived
    parsed = parse_message(arrival.data, our_addresses=desk.runtime.our_addresses)
    assert parsed.auto_submitted


def test_every_attempt_sends_the_same_bytes(make_desk: MakeDesk) -> None:
    """A copy sent again after a crash is byte for byte the first one, so receivers can drop it."""
    desk = make_desk({"host": "127.0.0.1", "security": "plain"})
    desk.deliver("Monitor flickers", body="Grüße <und> = Zeichen\n")
    [row] = desk.rows()
    route = route_for(desk.runtime.config, row)
    assert route is not None

    first, second = (message_bytes(compose(row, route)) for _ in range(2))

    assert first == second

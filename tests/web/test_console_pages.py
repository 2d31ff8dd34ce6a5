"""The console's pages over HTTP: accounts, the log and its search, a message, quarantine, outbox, packs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from console_client import TestClient, sign_in
from console_desk import ConsoleDesk, make_mail
from sqlmodel import select

from engine.rules.explain import explain_message, read_trace
from engine.storage.db import transaction
from engine.storage.leases import Worker, claim, register_worker
from engine.storage.message_log import LogSearch, search_log
from engine.storage.models import LedgerEntry, OutboxMessage, QuarantineEntry


def _ids(page: str) -> list[int]:
    """The log entries a Messages page lists, in order."""
    return [int(found) for found in re.findall(r'<td><a href="/messages/(\d+)">\1</a></td>', page)]


def test_the_accounts_page_shows_state_and_todays_outcomes_and_refreshes(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "vic")
    page = client.get("/accounts").text
    assert "helpdesk" in page and "never_polled" in page
    assert "1 updated" in page and "3 quarantined" in page
    assert '<meta http-equiv="refresh" content="15">' in page


def test_the_log_lists_every_message_newest_first(client: TestClient, desk: ConsoleDesk) -> None:
    sign_in(client, "vic")
    assert _ids(client.get("/messages").text) == [4, 3, 2, 1]


def test_the_log_is_searched_by_sender_subject_outcome_rule_number_and_date(
    client: TestClient, desk: ConsoleDesk
) -> None:
    desk.process("grace", make_mail("Monitor flickers", "<g-1@example.com>", sender="Grace@Example.com"))
    sign_in(client, "vic")
    today = datetime.now(UTC).date().isoformat()
    searches = {
        "sender=grace@example.com": [5],
        "subject=SCANNER": [2],
        "outcome=updated": [1],
        "rule=update_call": [1],
        "number=100": [1],
        f"date={today}&outcome=quarantined": [5, 4, 3, 2],
        "date=2001-01-01": [],
        "subject=100%25": [],  # a % is a character, not a wildcard
    }
    for query, expected in searches.items():
        assert _ids(client.get(f"/messages?{query}").text) == expected, query
    assert "number: digits" in client.get("/messages?number=x").text


def test_the_log_pages_by_keyset_with_an_older_link(client: TestClient, desk: ConsoleDesk) -> None:
    for n in range(60):
        desk.process(f"bulk{n}", make_mail(f"Bulk {n}", f"<bulk-{n}@example.com>"))
    sign_in(client, "vic")
    first = client.get("/messages?outcome=quarantined").text
    assert len(_ids(first)) == 50
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert _ids(first) == list(range(64, 14, -1))
    assert _ids(second) == list(range(14, 1, -1))  # the rest, down to the first quarantined mail
    assert 'rel="next"' not in second


def test_a_message_page_shows_the_trace_stored_when_it_was_decided(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "vic")
    page = client.get("/messages/1").text
    assert "MATCH update_call" in page and "outcome: updated (rule update_call)" in page
    assert "subject: &#39;RE: [CALL#100] toner everywhere&#39;" in page
    # the trace is what was decided then: changing the pack later does not rewrite it
    (desk.root / "rules" / "local.yaml").write_text((desk.root / "rules" / "strict.yaml").read_text())
    assert "MATCH update_call" in client.get("/messages/1").text


def test_a_quarantined_message_keeps_the_trace_of_the_rules_that_failed(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "vic")
    page = client.get("/messages/2").text
    assert "no rule matched: the message would be quarantined" in page
    assert f'href="/quarantine/{desk.results["new"].quarantine_id}"' in page


def test_a_message_page_lists_its_replies_and_links_its_item(client: TestClient, desk: ConsoleDesk) -> None:
    sign_in(client, "vic")
    page = client.get("/messages/1").text
    assert "[CALL#100] Call 100 has been updated" in page and "<td>queued</td>" in page
    assert '<a href="/items/call/100">call 100</a>' in page
    item = client.get("/items/call/100").text
    assert "toner everywhere" in item and "email_update" in item


def test_a_message_page_links_its_kept_original(client: TestClient, desk: ConsoleDesk) -> None:
    sign_in(client, "vic")
    page = client.get("/messages/1").text
    assert '<a href="/messages/1/original">view</a>' in page and "not kept" not in page


def test_the_original_is_shown_as_text_and_downloads_byte_for_byte(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "vic")
    shown = client.get("/messages/1/original").text
    assert "Message-ID: &lt;update-1@example.com&gt;" in shown and "It is broken." in shown
    download = client.get("/messages/1/original.eml")
    assert download.headers["content-disposition"] == 'attachment; filename="message-1.eml"'
    assert b"Subject: RE: [CALL#100] toner everywhere" in download.content


def test_quarantine_retry_after_fixing_the_pack_on_disk_releases_the_mail(
    client: TestClient, desk: ConsoleDesk
) -> None:
    csrf = sign_in(client, "root")
    held = desk.results["new"].quarantine_id
    still = client.post(f"/quarantine/{held}/retry", data={"csrf": csrf}).text
    assert "Still quarantined: no rule of pack" in still
    desk.fix_pack()
    released = client.post(f"/quarantine/{held}/retry", data={"csrf": csrf}).text
    assert "Released: <strong>logged</strong> (rule log_new_call)" in released
    with transaction(desk.runtime.engine) as session:
        entry = session.get(QuarantineEntry, held)
        assert entry is not None and entry.status == "released"
        logged = session.exec(select(LedgerEntry).where(LedgerEntry.outcome == "logged")).one()
        assert logged.subject == "Scanner jammed"


def test_quarantine_retry_reports_a_broken_pack_with_its_position(
    client: TestClient, desk: ConsoleDesk
) -> None:
    csrf = sign_in(client, "root")
    (desk.root / "rules" / "local.yaml").write_text("extends: default\nrules: 7\n")
    answer = client.post(f"/quarantine/{desk.results['new'].quarantine_id}/retry", data={"csrf": csrf})
    assert answer.status_code == 400 and "local.yaml:2:" in answer.text


def test_quarantine_drop_deletes_the_entry(client: TestClient, desk: ConsoleDesk) -> None:
    csrf = sign_in(client, "root")
    held = desk.results["other"].quarantine_id
    page = client.post(f"/quarantine/{held}/drop", data={"csrf": csrf}).text
    assert f'id="q-{held}"' not in page
    with transaction(desk.runtime.engine) as session:
        assert session.get(QuarantineEntry, held) is None
    assert client.post(f"/quarantine/{held}/drop", data={"csrf": csrf}).status_code == 404


def test_outbox_retry_queues_a_failed_message_again_and_cancel_stops_it(
    client: TestClient, desk: ConsoleDesk
) -> None:
    csrf = sign_in(client, "root")
    failed = desk.fail_outgoing()
    assert f'id="out-{failed}"' in client.get("/outbox?status=failed").text
    client.post(f"/outbox/{failed}/retry", data={"csrf": csrf})
    with transaction(desk.runtime.engine) as session:
        row = session.get(OutboxMessage, failed)
        assert row is not None and (row.status, row.attempts, row.next_attempt_at) == ("queued", 0, None)
    client.post(f"/outbox/{failed}/cancel", data={"csrf": csrf})
    assert f'id="out-{failed}"' in client.get("/outbox?status=cancelled").text
    refused = client.post(f"/outbox/{failed}/cancel", data={"csrf": csrf})
    assert refused.status_code == 404 and "is cancelled" in refused.text


def test_the_packs_page_shows_each_rule_with_its_file_and_line_and_check(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "vic")
    page = client.get("/packs").text
    assert re.search(r"<code>[^<]*default\.yaml:\d+:\d+</code>", page)
    assert "ok: rule pack" in page
    assert '<th scope="row">log_new_call' not in page  # the local pack removes it


def test_try_it_decides_a_logged_mail_with_another_pack_and_writes_nothing(
    client: TestClient, desk: ConsoleDesk
) -> None:
    csrf = sign_in(client, "vic")
    strict = str((desk.root / "rules" / "strict.yaml").resolve())
    with transaction(desk.runtime.engine) as session:
        before = (
            len(session.exec(select(LedgerEntry)).all()),
            len(session.exec(select(OutboxMessage)).all()),
        )
    page = client.post("/packs/try", data={"csrf": csrf, "source": "log", "ident": "1", "pack": strict}).text
    assert "updated (rule update_call)" in page  # what happened
    assert 'id="would-verdict">refused (rule no_updates_by_mail)' in page  # with strict.yaml
    with transaction(desk.runtime.engine) as session:
        after = (len(session.exec(select(LedgerEntry)).all()), len(session.exec(select(OutboxMessage)).all()))
    assert after == before


def test_try_it_decides_a_quarantined_or_uploaded_mail(client: TestClient, desk: ConsoleDesk) -> None:
    csrf = sign_in(client, "vic")
    default = next(
        f
        for f in re.findall(r'<option value="([^"]+)"', client.get("/packs/try").text)
        if f.endswith("/default.yaml")
    )
    held = str(desk.results["new"].quarantine_id)
    page = client.post(
        "/packs/try", data={"csrf": csrf, "source": "quarantine", "ident": held, "pack": default}
    )
    assert 'id="would-verdict">logged (rule log_new_call)' in page.text
    upload = {"eml": ("mail.eml", make_mail("Mouse dead", "<up-1@example.com>"), "message/rfc822")}
    form = {"csrf": csrf, "source": "upload", "account": "helpdesk", "pack": default}
    uploaded = client.post("/packs/try", data=form, files=upload).text
    assert 'id="would-verdict">logged (rule log_new_call)' in uploaded
    assert "pack local (the account&#39;s)" in uploaded


def test_try_it_uses_only_the_listed_pack_files(client: TestClient, desk: ConsoleDesk) -> None:
    csrf = sign_in(client, "vic")
    answer = client.post(
        "/packs/try", data={"csrf": csrf, "source": "log", "ident": "1", "pack": "/etc/passwd"}
    )
    assert answer.status_code == 400 and "choose one of the listed pack files" in answer.text


def test_a_subject_search_reads_the_log_a_window_at_a_time_and_continues(desk: ConsoleDesk) -> None:
    for n in range(20):
        desk.process(f"bulk{n}", make_mail(f"Bulk {n}", f"<window-{n}@example.com>"))
    with transaction(desk.runtime.engine) as session:
        first = search_log(session, LogSearch(subject="scanner"), window=12)
        assert (first.rows, first.older) == ([], 13)  # read 13..24: not there, go on below 13
        second = search_log(session, LogSearch(subject="scanner", before=first.older), window=12)
        assert [row.id for row in second.rows] == [2] and second.older is None
        narrowed = search_log(session, LogSearch(subject="scanner", outcome="quarantined"), window=10)
        assert [row.id for row in narrowed.rows] == [2]  # an indexed filter: no window


def test_the_accounts_page_names_the_process_holding_an_accounts_lease(
    client: TestClient, desk: ConsoleDesk
) -> None:
    worker = Worker("w-1", "desk-host-7", 4242)
    register_worker(desk.runtime.engine, worker, ["helpdesk"])
    assert claim(desk.runtime.engine, worker, "helpdesk", 30.0) is not None
    sign_in(client, "vic")
    assert "desk-host-7 (pid 4242) since" in client.get("/accounts").text


def test_the_stored_trace_reads_exactly_as_explain_printed_it_before(desk: ConsoleDesk) -> None:
    raw = make_mail("RE: [CALL#100] and the fuser", "<same-trace@example.com>")
    account = desk.runtime.config.account("helpdesk")
    before = explain_message(desk.runtime, account, raw)
    desk.process("same", raw)
    with transaction(desk.runtime.engine) as session:
        entry = session.exec(
            select(LedgerEntry).where(LedgerEntry.message_key == "same-trace@example.com")
        ).one()
        stored = read_trace(entry.trace)
    assert stored is not None and stored["text"] == before.to_text()
    assert stored["json"] == json.loads(json.dumps(before.to_json(), default=str))

"""A PostgreSQL database that accepts and never answers (a black hole) does not hang ``mailgate run``.

The database is reached through a ``TcpProxy`` that is frozen mid-run: TCP stays healthy (the
proxy's kernel acknowledges every byte), so only mailgate's own limits notice. The tests show:
a wait for an answer is cut after ``statement_seconds`` plus a few seconds, and the pass fails as
an outage (one WARNING line, back-off, retried); SIGTERM stops the service at once even while it
waits for the database; the per-message time limit firing inside the driver never leaves a
connection with half a request on it to be reused; and once the database answers again, every
message is processed exactly once.
"""

from __future__ import annotations

import signal
from pathlib import Path

from e2e_desk import (
    Desk,
    Mailbox,
    MakeDesk,
    account_yaml,
    alive,
    connector_yaml,
    events,
    mail,
    running,
    wait_for,
)
from servers.tcp_proxy import TcpProxy
from sqlalchemy import text

from engine.storage.pg_connection import GuardedConnection

STOP_BOUND = 10  # seconds: SIGTERM ends the service within this, whatever the database does


def _desk(make_desk: MakeDesk, mailbox: Mailbox, url: str, extra: str) -> Desk:
    return make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")), database=url, extra=extra)


def _stuck_in_the_database(proxy: TcpProxy, before: int) -> bool:
    return proxy.held > before


def _processed_once(desk: Desk, mailbox: Mailbox, *message_ids: str) -> None:
    desk.runtime.engine.dispose()  # its pooled connections may have been cut
    assert [(e["message_id"], e["outcome"]) for e in desk.ledger()] == [(m, "logged") for m in message_ids]
    assert len(desk.new_calls()) == len(message_ids)
    assert mailbox.count() == 0


def test_sigterm_stops_the_service_while_it_waits_for_a_database_that_never_answers(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    # statements may take two minutes: without the stop's own limit, SIGTERM would wait that long;
    # the stop cannot release its lease either, so the next process takes it over when it runs out
    extra = "database_timeouts: {statement_seconds: 120}\nservice: {lease_seconds: 5}\n"
    desk = _desk(make_desk, mailbox, url, extra)
    log = tmp_path / "run.log"
    process = desk.start(log=log)
    try:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        proxy.freeze()
        held = proxy.held
        mailbox.append(mail("Printer 1", message_id="s1@ex"), mail("Printer 2", message_id="s2@ex"))
        wait_for(lambda: _stuck_in_the_database(proxy, held), "the service waiting for the database")
        alive(process, log)

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert status == 0, text
    assert [e["signal"] for e in events(text, "stopping")] == ["SIGTERM"]
    assert events(text, "service_stopped") and "Traceback" not in text, text

    proxy.pass_traffic()
    with running(desk, tmp_path / "again.log"):
        wait_for(lambda: mailbox.count() == 0, "the mail processed after the lease ran out")
    _processed_once(desk, mailbox, "s1@ex", "s2@ex")


def test_sigterm_stops_the_service_while_it_connects_to_a_database_that_never_answers(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    extra = "database_timeouts: {statement_seconds: 120}\nservice: {lease_seconds: 5}\n"
    desk = _desk(make_desk, mailbox, url, extra)
    log = tmp_path / "run.log"
    process = desk.start(log=log)
    try:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        proxy.freeze()
        proxy.cut()  # the pooled connections are gone: the next use of the database connects anew
        accepted = proxy.accepted
        mailbox.append(mail("Printer 5", message_id="c1@ex"))
        wait_for(lambda: proxy.accepted > accepted, "the service connecting to the database")
        alive(process, log)

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert status == 0 and events(text, "service_stopped") and "Traceback" not in text, text

    proxy.pass_traffic()
    with running(desk, tmp_path / "again.log"):
        wait_for(lambda: mailbox.count() == 0, "the mail processed after the lease ran out")
    _processed_once(desk, mailbox, "c1@ex")


def test_a_database_that_never_answers_is_an_outage_with_back_off_and_one_warning_per_failure(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    timeouts = "database_timeouts: {statement_seconds: 1, connect_seconds: 2}\n"
    desk = _desk(make_desk, mailbox, url, timeouts)
    log = tmp_path / "run.log"

    with running(desk, log) as service:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        proxy.freeze()
        mailbox.append(mail("Printer 3 broken", message_id="o1@ex"))
        wait_for(lambda: len(events(log.read_text(), "poll_failed")) >= 2, "two failed passes")
        alive(service, log)
        status = desk.mailgate("status")  # reads the same frozen database: says so, does not hang
        proxy.pass_traffic()
        wait_for(lambda: mailbox.count() == 0, "the mail processed once the database answers")

    text = log.read_text()
    assert service.returncode == 0, text
    assert "Traceback" not in text and " ERROR " not in text, text
    # the first request left unanswered was given up after statement_seconds + 5 s
    assert 'error="database unavailable: no answer from the database in 6 s"' in text, text
    failures = events(text, "poll_failed")
    assert all(f["error"].startswith("database unavailable: ") for f in failures), failures
    delays = [float(f["retry_in"]) for f in failures]
    assert delays == sorted(delays) and delays[0] > 0  # backing off
    warned = [line for line in text.splitlines() if "event=poll_failed" in line and " WARNING " in line]
    assert len(warned) == len(failures)
    assert status.returncode == 1 and "timeout" in status.stderr, status
    _processed_once(desk, mailbox, "o1@ex")
    # once the database answers, the status shows the outage it could not record meanwhile
    shown = desk.status()["helpdesk"]
    assert shown["state"] == "ok" and shown["last_error"].startswith("database unavailable: "), shown


def test_the_time_limit_firing_inside_the_driver_never_leaves_a_broken_connection_in_use(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    extra = (
        "processing: {time_limit_seconds: 1}\n"
        "database_timeouts: {statement_seconds: 60, connect_seconds: 2}\n"
    )
    desk = _desk(make_desk, mailbox, url, extra)
    log = tmp_path / "run.log"

    with running(desk, log) as service:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        proxy.freeze_on(b"INSERT INTO call (")  # the new call's insert, under the time limit
        mailbox.append(mail("Printer 4 broken", message_id="t1@ex"))
        wait_for(lambda: _stuck_in_the_database(proxy, 0), "the service waiting for the database")
        # the time limit fires inside the driver: the batch fails as an outage, without its connection
        wait_for(lambda: len(events(log.read_text(), "poll_failed")) >= 1, "the failed pass")
        alive(service, log)
        proxy.pass_traffic()
        wait_for(lambda: mailbox.count() == 0, "the mail processed once the database answers")

    text = log.read_text()
    assert service.returncode == 0, text
    assert "another command is already in progress" not in text, text
    assert "Traceback" not in text, text
    _processed_once(desk, mailbox, "t1@ex")  # not quarantined: the limit was the database's fault


def test_statement_and_connection_limits_reach_postgresql(
    make_desk: MakeDesk, mailbox: Mailbox, proxied_postgres: tuple[str, TcpProxy]
) -> None:
    url, _ = proxied_postgres
    extra = "database_timeouts: {statement_seconds: 7, keepalive_seconds: 12}\n"
    desk = _desk(make_desk, mailbox, url, extra)

    with desk.runtime.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, GuardedConnection) and driver.answer_seconds == 12
        parameters = driver.info.get_parameters()
        statement_timeout = connection.execute(text("SHOW statement_timeout")).scalar()

    assert statement_timeout == "7s"
    shown = [parameters[name] for name in ("connect_timeout", "keepalives_idle", "tcp_user_timeout")]
    assert shown == ["5", "12", "24000"]

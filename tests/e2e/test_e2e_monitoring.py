"""``mailgate run --http``: ``/metrics`` and ``/healthz`` scraped over HTTP, as Prometheus and a
health check do, while the console script reads the session's Dovecot: the per-account counters
after mail was processed, 200 then 503 when an account cannot log in or the database goes away,
and ``mailgate status``'s exit status along the way."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from e2e_desk import (
    Mailbox,
    MakeDesk,
    account_yaml,
    alive,
    connector_yaml,
    mail,
    running,
    wait_for,
    without_sender,
)
from prometheus_client.parser import text_string_to_metric_families
from servers.dovecot import Dovecot, free_port
from sqlalchemy import text
from sqlalchemy.engine import Engine

HEARTBEAT = "service:\n  heartbeat_seconds: 0.5\n"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET on the service's endpoint; (0, why) if it cannot be reached yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as exc:
        return 0, str(exc)


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, by (name, labels)."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value (None if there is no such sample)."""
    return samples.get((name, frozenset(labels.items())))


def health(port: int) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON body) of ``/healthz``; (0, {}) if it cannot be reached yet."""
    status, body = get(port, "/healthz")
    return status, (json.loads(body) if status else {})


def test_metrics_and_healthz_follow_an_account_that_works_then_cannot_log_in(
    make_desk: MakeDesk, dovecot: Dovecot, mailbox: Mailbox, protocol: str, tmp_path: Path
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol), poll=1), extra=HEARTBEAT)
    mailbox.append(mail("Printer on fire", message_id="m1@ex"), without_sender("m2@ex"))
    port, log = free_port(), tmp_path / "run.log"
    with running(desk, log, "--http", f"127.0.0.1:{port}") as process:

        def both_counted() -> bool:
            alive(process, log)
            if get(port, "/metrics")[0] != 200:
                return False
            samples = scrape(port)
            logged = metric(samples, "mailgate_messages_total", account="helpdesk", outcome="logged")
            held = metric(samples, "mailgate_messages_total", account="helpdesk", outcome="quarantined")
            polled = metric(samples, "mailgate_account_state", account="helpdesk", state="ok")
            return (logged, held, polled) == (1, 1, 1)

        wait_for(both_counted, "/metrics to count both messages and the pass that handled them")
        samples = scrape(port)
        assert metric(samples, "mailgate_message_processing_seconds_count", account="helpdesk") == 2
        assert (
            metric(samples, "mailgate_message_processing_seconds_bucket", account="helpdesk", le="+Inf") == 2
        )
        assert metric(samples, "mailgate_fetch_errors_total", account="helpdesk") == 0
        assert metric(samples, "mailgate_acknowledge_errors_total", account="helpdesk") == 0
        assert metric(samples, "mailgate_account_state", account="helpdesk", state="ok") == 1
        assert metric(samples, "mailgate_account_retry_delay_seconds", account="helpdesk") == 0
        assert (
            metric(samples, "mailgate_last_successful_poll_timestamp_seconds", account="helpdesk") or 0
        ) > 0
        assert metric(samples, "mailgate_quarantine_messages", account="helpdesk") == 1
        assert metric(samples, "mailgate_database_up") == 1
        assert metric(samples, "mailgate_parse_worker_starts_total") == 0  # two messages: no backlog
        outbox = Counter(row["status"] for row in desk.outbox())  # no outgoing server: replies wait
        assert outbox["queued"] >= 1
        for status, count in outbox.items():
            assert metric(samples, "mailgate_outbox_messages", status=status) == count
        assert (metric(samples, "mailgate_outbox_oldest_waiting_age_seconds") or -1) >= 0

        wait_for(lambda: health(port)[0] == 200, "/healthz to answer 200")
        status, report = health(port)
        assert report["status"] == "ok" and report["database"] == "ok" and report["reasons"] == []
        wait_for(lambda: desk.mailgate("status").returncode == 0, "mailgate status to exit 0")

        # the password changes under the service: it cannot log in again
        dovecot.add_user(mailbox.user, mailbox.password + "-changed")
        if protocol == "imap":  # its session stays logged in (IDLE); POP3 logs in at every pass
            dovecot.kick(mailbox.user)
        wait_for(lambda: (alive(process, log), health(port)[0])[1] == 503, "/healthz to answer 503")
        status, report = health(port)
        assert report["status"] == "unhealthy" and report["database"] == "ok"
        accounts = report["accounts"]
        assert isinstance(accounts, dict) and accounts["helpdesk"]["healthy"] is False
        [reason] = report["reasons"]  # type: ignore[misc]
        assert "account 'helpdesk' has not polled successfully" in reason

        def refused() -> bool:
            samples = scrape(port)
            return metric(samples, "mailgate_account_state", account="helpdesk", state="auth_failed") == 1

        wait_for(refused, "/metrics to show the account's refused login")
        samples = scrape(port)
        assert (metric(samples, "mailgate_fetch_errors_total", account="helpdesk") or 0) >= 1
        assert (metric(samples, "mailgate_account_consecutive_failures", account="helpdesk") or 0) >= 1
        assert (metric(samples, "mailgate_account_retry_delay_seconds", account="helpdesk") or 0) > 0
        wait_for(lambda: desk.mailgate("status").returncode == 4, "mailgate status to exit 4 (failing)")
        rows = [json.loads(line) for line in desk.mailgate("status", "--json").stdout.splitlines()]
        assert [(r["account"], r["state"], r["failing"]) for r in rows] == [("helpdesk", "auth_failed", True)]

    assert process.returncode == 0, log.read_text()
    stopped = desk.mailgate("status")
    assert stopped.returncode == 3
    assert stopped.stdout.startswith("SERVICE: stopped on ")
    assert get(port, "/metrics")[0] == 0  # the endpoint went with the service


@pytest.mark.postgres
def test_healthz_is_503_while_the_database_refuses_connections_and_200_once_it_is_back(
    make_desk: MakeDesk, pg_admin_engine: Engine, mailbox: Mailbox, tmp_path: Path
) -> None:
    name = f"mailgate_t_{secrets.token_hex(6)}"
    with pg_admin_engine.connect() as admin:
        admin.execute(text(f'CREATE DATABASE "{name}"'))

    def allow_connections(allowed: bool) -> None:
        with pg_admin_engine.connect() as admin:
            admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:  # and drop the ones open: the database is gone for the service
                admin.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )

    try:
        url = pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
        desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap"), poll=1), database=url)
        desk.runtime.close()
        port, log = free_port(), tmp_path / "run.log"
        with running(desk, log, "--http", f"127.0.0.1:{port}") as process:

            def polled_and_healthy() -> bool:
                alive(process, log)
                status, report = health(port)
                accounts = report.get("accounts")
                return status == 200 and isinstance(accounts, dict) and accounts["helpdesk"]["state"] == "ok"

            wait_for(polled_and_healthy, "/healthz to answer 200 after a first poll")
            allow_connections(False)
            wait_for(lambda: (alive(process, log), health(port)[0])[1] == 503, "/healthz to answer 503")
            _, report = health(port)
            assert report["status"] == "unhealthy"
            assert "not currently accepting connections" in str(report["database"]), report
            [reason] = report["reasons"]  # type: ignore[misc]
            assert str(reason).startswith("database: ")
            samples = scrape(port)  # still served: the figures from memory, none from the database
            assert metric(samples, "mailgate_database_up") == 0
            assert metric(samples, "mailgate_account_state", account="helpdesk", state="ok") == 1
            assert metric(samples, "mailgate_quarantine_messages", account="helpdesk") is None
            allow_connections(True)
            wait_for(lambda: (alive(process, log), health(port)[0])[1] == 200, "/healthz to answer 200 again")
            assert metric(scrape(port), "mailgate_database_up") == 1
        assert process.returncode == 0, log.read_text()
    finally:
        with pg_admin_engine.connect() as admin:
            admin.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

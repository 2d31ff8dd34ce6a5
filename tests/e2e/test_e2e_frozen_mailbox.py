"""An IMAP server that stops answering (a ``TcpProxy`` frozen in front of Dovecot) does not hang
``mailgate run``: each command gives up after the connector's ``timeout``, the account backs off
with one WARNING line per failure, SIGTERM stops the service at once, and the mail that waited is
processed once the server answers again."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_desk import Mailbox, MakeDesk, account_yaml, alive, connector_yaml, events, mail, wait_for
from servers.tcp_proxy import TcpProxy

STOP_BOUND = 10  # seconds: SIGTERM ends the service within this


@pytest.fixture
def imap_proxy(mailbox: Mailbox) -> Iterator[TcpProxy]:
    """A proxy in front of the session's Dovecot, plain IMAP."""
    proxy = TcpProxy(mailbox.dovecot.host, mailbox.dovecot.imap_port)
    yield proxy
    proxy.close()


def test_a_frozen_imap_server_is_a_failure_with_back_off_and_sigterm_still_stops_at_once(
    make_desk: MakeDesk, mailbox: Mailbox, imap_proxy: TcpProxy, tmp_path: Path
) -> None:
    connector = connector_yaml(mailbox, "imap", port=imap_proxy.port, security="plain", timeout=2)
    desk = make_desk(account_yaml("helpdesk", connector, poll=1))
    log = tmp_path / "run.log"
    process = desk.start(log=log)
    try:
        wait_for(lambda: len(events(log.read_text(), "polled")) >= 1, "the first pass")
        imap_proxy.freeze()
        mailbox.append(mail("Printer 6 broken", message_id="f1@ex"))  # straight to Dovecot
        wait_for(lambda: len(events(log.read_text(), "poll_failed")) >= 2, "two failed passes")
        alive(process, log)

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert status == 0 and events(text, "service_stopped"), text
    assert "Traceback" not in text and " ERROR " not in text, text
    failures = events(text, "poll_failed")
    delays = [float(f["retry_in"]) for f in failures]
    assert delays == sorted(delays) and delays[0] > 0  # backing off
    warned = [line for line in text.splitlines() if "event=poll_failed" in line and " WARNING " in line]
    assert len(warned) == len(failures)
    assert mailbox.count() == 1 and desk.ledger() == []  # nothing was done with the frozen server

    imap_proxy.pass_traffic()
    again = desk.mailgate("run", "--once")
    assert again.stdout.splitlines() == ["helpdesk: 1 processed (1 logged)"], again.stderr
    assert mailbox.count() == 0
    assert [(e["message_id"], e["outcome"]) for e in desk.ledger()] == [("f1@ex", "logged")]

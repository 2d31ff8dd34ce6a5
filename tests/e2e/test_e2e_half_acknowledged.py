"""Mail flagged ``\\Deleted`` whose ``UID EXPUNGE`` never reached Dovecot is removed by the next pass,
if and only if the ledger has it.

The connection is cut for real: the account reads Dovecot through a ``TcpProxy`` (plain IMAP, so
that the proxy sees the commands) told to reset the connection when ``UID EXPUNGE`` goes by, after
the ``UID STORE +FLAGS (\\Deleted)`` was answered. A message someone else flagged ``\\Deleted``
that mailgate never processed is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_desk import Mailbox, MakeDesk, account_yaml, connector_yaml, events, mail
from servers.tcp_proxy import TcpProxy


@pytest.fixture
def imap_proxy(mailbox: Mailbox) -> Iterator[TcpProxy]:
    """A proxy in front of the session's Dovecot, plain IMAP."""
    proxy = TcpProxy(mailbox.dovecot.host, mailbox.dovecot.imap_port)
    yield proxy
    proxy.close()


def _deleted(mailbox: Mailbox) -> list[bytes]:
    """The UIDs of the INBOX's messages flagged \\Deleted."""
    with mailbox.dovecot.imap(mailbox.user) as client:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "DELETED")
    return data[0].split()


def _flag_deleted(mailbox: Mailbox, message_id: str) -> None:
    """Flag one message \\Deleted as another mail client would, without expunging it."""
    with mailbox.dovecot.imap(mailbox.user) as client:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "HEADER", "Message-ID", message_id)
        [uid] = data[0].split()
        client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")


def test_mail_left_deleted_by_a_connection_lost_before_expunge_is_removed_by_the_next_pass(
    make_desk: MakeDesk, mailbox: Mailbox, imap_proxy: TcpProxy
) -> None:
    connector = connector_yaml(mailbox, "imap", port=imap_proxy.port, security="plain")
    desk = make_desk(account_yaml("helpdesk", connector))
    mailbox.append(mail("Printer 1 broken", message_id="x1@ex"), mail("Printer 2 broken", message_id="x2@ex"))
    imap_proxy.cut_on(b"UID EXPUNGE")

    cut = desk.mailgate("-v", "run", "--once")

    assert cut.stdout.splitlines() == ["helpdesk: 2 processed (2 logged)"], cut.stderr
    assert len(_deleted(mailbox)) == 2 and mailbox.count() == 2  # flagged, never expunged

    again = desk.mailgate("-v", "run", "--once")

    assert again.stdout.splitlines() == ["helpdesk: 0 processed"], again.stderr
    assert [e["count"] for e in events(again.stderr, "half_acknowledged_removed")] == ["2"]
    assert mailbox.count() == 0
    ledger = [(e["message_id"], e["outcome"]) for e in desk.ledger()]
    assert ledger == [("x1@ex", "logged"), ("x2@ex", "logged")]
    assert [summary for _, summary in desk.new_calls()] == ["Printer 1 broken", "Printer 2 broken"]


def test_mail_someone_else_flagged_deleted_is_neither_processed_nor_expunged(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")))
    mailbox.append(mail("Not for us", message_id="y1@ex"), mail("Printer 3 broken", message_id="y2@ex"))
    _flag_deleted(mailbox, "<y1@ex>")

    first = desk.mailgate("-v", "run", "--once")
    second = desk.mailgate("-v", "run", "--once")

    assert first.stdout.splitlines() == ["helpdesk: 1 processed (1 logged)"], first.stderr
    assert second.stdout.splitlines() == ["helpdesk: 0 processed"], second.stderr
    assert not events(first.stderr + second.stderr, "half_acknowledged_removed")
    assert len(_deleted(mailbox)) == 1 and mailbox.count() == 1  # still there, still flagged
    assert [e["message_id"] for e in desk.ledger()] == ["y2@ex"]


def test_mail_flagged_deleted_by_hand_after_it_was_committed_is_expunged(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    """The same state made with imaplib: committed (a kill before acknowledging), then flagged."""
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, "imap")))
    mailbox.append(mail("Printer 4 broken", message_id="z1@ex"), mail("Not ours", message_id="z2@ex"))
    _flag_deleted(mailbox, "<z2@ex>")  # someone else's, never processed
    committed = desk.mailgate("run", "--once", env={"MAILGATE_TEST_SIGNAL_AFTER_COMMIT": "1:SIGKILL"})
    assert committed.returncode < 0 and mailbox.count() == 2
    _flag_deleted(mailbox, "<z1@ex>")  # as the STORE of an acknowledgement cut short

    again = desk.mailgate("-v", "run", "--once")

    assert again.stdout.splitlines() == ["helpdesk: 0 processed"], again.stderr
    assert [e["count"] for e in events(again.stderr, "half_acknowledged_removed")] == ["1"]
    assert mailbox.count() == 1 and len(_deleted(mailbox)) == 1  # only someone else's is left
    assert [e["message_id"] for e in desk.ledger()] == ["z1@ex"]

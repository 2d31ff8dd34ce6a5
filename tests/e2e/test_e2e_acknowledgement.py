"""How the service acknowledges mail on the real Dovecot: a processed folder, a crash between the
commit and the deletion, and POP3 sessions cut at ``max_messages_per_session``.

The crashes use the service's test-only hooks: with ``MAILGATE_TEST_SIGNAL_AFTER_COMMIT=K:SIGKILL``
the ``mailgate`` process kills itself right after the commit that keeps the K-th message (its
batch's), before any acknowledgement; with ``MAILGATE_TEST_SIGNAL_AFTER_MESSAGE=K:SIG`` as soon as
the K-th message is done, before its batch is committed.
"""

from __future__ import annotations

import signal

from e2e_desk import Mailbox, MakeDesk, account_yaml, connector_yaml, events, mail, without_sender

from engine.service.runner import TEST_SIGNAL_AFTER_COMMIT_ENV, TEST_SIGNAL_AFTER_MESSAGE_ENV


def _kill_after_commit(number: int) -> dict[str, str]:
    return {TEST_SIGNAL_AFTER_COMMIT_ENV: f"{number}:SIGKILL"}


def test_imap_processed_folder_receives_the_mails_instead_of_deleting_them(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    connector = connector_yaml(mailbox, "imap", processed_folder="Processed")
    desk = make_desk(account_yaml("helpdesk", connector))
    mailbox.append(mail("Scanner is offline", message_id="p1@ex"), without_sender("p2@ex"))

    [report] = desk.run_once()

    assert (report.error, report.outcomes) == (None, (("logged", 1), ("quarantined", 1)))
    assert (mailbox.count(), mailbox.count("Processed")) == (0, 2)
    [again] = desk.run_once()  # what was moved away is not read again
    assert (again.error, again.processed) == (None, 0)
    assert [e["outcome"] for e in desk.ledger()] == ["logged", "quarantined"]


def test_a_kill_between_commit_and_acknowledgement_creates_no_second_call_on_restart(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol)))
    mailbox.append(mail("Printer 1 broken", message_id="k1@ex"), mail("Printer 2 broken", message_id="k2@ex"))

    killed = desk.mailgate("run", "--once", env=_kill_after_commit(1))

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert mailbox.count() == 2  # both committed (one batch), neither deleted
    assert [summary for _, summary in desk.new_calls()] == ["Printer 1 broken", "Printer 2 broken"]

    again = desk.mailgate("run", "--once")

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["helpdesk: 2 processed (2 duplicate)"]
    assert mailbox.count() == 0
    assert [summary for _, summary in desk.new_calls()] == ["Printer 1 broken", "Printer 2 broken"]
    assert [(e["message_id"], e["outcome"]) for e in desk.ledger()] == [
        ("k1@ex", "logged"),
        ("k2@ex", "logged"),
    ]
    assert [m["subject"].endswith("has been logged") for m in desk.outbox()] == [True, True]


def test_sigterm_finishes_the_message_in_hand_then_stops(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol)))
    mailbox.append(mail("Printer 1 broken", message_id="t1@ex"), mail("Printer 2 broken", message_id="t2@ex"))

    stopped = desk.mailgate("-v", "run", env={TEST_SIGNAL_AFTER_MESSAGE_ENV: "1:SIGTERM"})

    assert stopped.returncode == 0, stopped.stderr
    assert [e["signal"] for e in events(stopped.stderr, "stopping")] == ["SIGTERM"]
    assert mailbox.count() == 1  # the first was acknowledged (over POP3: QUIT sent), the second left
    again = desk.mailgate("run", "--once")
    assert again.stdout.splitlines() == ["helpdesk: 1 processed (1 logged)"]  # not a duplicate
    assert [summary for _, summary in desk.new_calls()] == ["Printer 1 broken", "Printer 2 broken"]


def test_a_kill_before_the_batch_is_committed_keeps_nothing_and_loses_no_mail(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str
) -> None:
    desk = make_desk(account_yaml("helpdesk", connector_yaml(mailbox, protocol)))
    mailbox.append(mail("Printer 1 broken", message_id="b1@ex"), mail("Printer 2 broken", message_id="b2@ex"))

    killed = desk.mailgate("run", "--once", env={TEST_SIGNAL_AFTER_MESSAGE_ENV: "1:SIGKILL"})

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert mailbox.count() == 2
    assert desk.new_calls() == [] and desk.ledger() == [] and desk.outbox() == []

    again = desk.mailgate("run", "--once")

    assert again.stdout.splitlines() == ["helpdesk: 2 processed (2 logged)"], again.stderr
    assert [summary for _, summary in desk.new_calls()] == ["Printer 1 broken", "Printer 2 broken"]
    assert mailbox.count() == 0


def test_pop3_max_messages_per_session_makes_deletions_take_effect_during_the_pass(
    make_desk: MakeDesk, mailbox: Mailbox
) -> None:
    connector = connector_yaml(mailbox, "pop3", max_messages_per_session=2)
    desk = make_desk(account_yaml("helpdesk", connector))
    mailbox.append(*(mail(f"Printer {n} broken", message_id=f"s{n}@ex") for n in range(1, 6)))

    # killed after the 4th commit: the first session QUIT after 2 deletions, so those took effect;
    # the second session's deletion of the 3rd never reached a QUIT, so the 3rd is still there
    killed = desk.mailgate("run", "--once", env=_kill_after_commit(4))

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert mailbox.count() == 3
    assert len(desk.new_calls()) == 4

    again = desk.mailgate("run", "--once")  # 3 messages, 2 per session: QUIT, reconnect, 1 more

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["helpdesk: 3 processed (2 duplicate, 1 logged)"]
    assert mailbox.count() == 0
    assert [summary for _, summary in desk.new_calls()] == [f"Printer {n} broken" for n in range(1, 6)]

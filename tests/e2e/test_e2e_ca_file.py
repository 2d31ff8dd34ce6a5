"""``ca_file`` is found the same way over both protocols: relative to the config's folder (every
other e2e test does that) or, as the IMAP and folder connectors expand ``~``, in the home folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from e2e_desk import Mailbox, MakeDesk, account_yaml, connector_yaml, mail


def test_a_ca_file_in_the_home_folder_is_found(
    make_desk: MakeDesk, mailbox: Mailbox, protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mailbox.dovecot.ca_cert, home / "desk-ca.pem")
    monkeypatch.setenv("HOME", str(home))
    connector = connector_yaml(mailbox, protocol).replace("ca_file: ca.pem", "ca_file: ~/desk-ca.pem")
    desk = make_desk(account_yaml("helpdesk", connector))
    (desk.root / "ca.pem").unlink()  # only the one in the home folder
    mailbox.append(mail("Scanner is offline", message_id="h1@ex"))

    [report] = desk.run_once()

    assert (report.error, report.processed) == (None, 1)
    assert mailbox.count() == 0

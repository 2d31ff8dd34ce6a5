"""iter_source_messages reads .eml files, folders of them, maildirs and mbox files, in a stable order."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from engine.errors import SourceError
from engine.mail.sources import SourceMessage, iter_source_messages


def mail(subject: str) -> bytes:
    return f"From: a@example.org\nSubject: {subject}\n\nbody of {subject}\n".encode()


def make_maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "200.host").write_bytes(mail("new-b"))
    (root / "new" / "100.host").write_bytes(mail("new-a"))
    (root / "cur" / "050.host:2,S").write_bytes(mail("cur-a"))
    (root / "tmp" / "300.host").write_bytes(mail("still being delivered"))
    (root / "new" / ".hidden").write_bytes(mail("hidden"))
    return root


def subjects(messages: list[SourceMessage]) -> list[str]:
    return [m.raw.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].decode() for m in messages]


def test_single_eml_file_is_one_message_with_its_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(mail("one"))
    assert list(iter_source_messages([path])) == [SourceMessage(str(path), mail("one"))]


def test_maildir_gives_new_then_cur_sorted_by_name_and_skips_tmp(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "Maildir")
    messages = list(iter_source_messages([root]))
    assert subjects(messages) == ["new-a", "new-b", "cur-a"]
    assert messages[0].origin == f"maildir:{root / 'new' / '100.host'}"


def test_maildir_made_by_the_standard_library_is_read(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add(mail("via mailbox"))
    box.close()
    assert subjects(list(iter_source_messages([tmp_path / "box"]))) == ["via mailbox"]


def test_mbox_gives_each_message_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(path, create=True)
    for subject in ("first", "second", "third"):
        box.add(mail(subject))
    box.close()
    messages = list(iter_source_messages([path]))
    assert subjects(messages) == ["first", "second", "third"]
    assert [m.origin for m in messages] == [f"mbox:{path}#1", f"mbox:{path}#2", f"mbox:{path}#3"]
    assert all(m.raw.startswith(b"From: a@example.org") for m in messages)


def test_mbox_is_recognised_by_content_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "Inbox"
    path.write_bytes(b"From a@example.org Tue Mar  4 10:00:00 2025\n" + mail("only") + b"\n")
    messages = list(iter_source_messages([path]))
    assert subjects(messages) == ["only"]
    assert messages[0].origin == f"mbox:{path}#1"


def test_plain_folder_gives_its_eml_files_sorted_and_ignores_others(tmp_path: Path) -> None:
    (tmp_path / "b.eml").write_bytes(mail("b"))
    (tmp_path / "a.EML").write_bytes(mail("a"))
    (tmp_path / "notes.txt").write_bytes(b"not mail")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.eml").write_bytes(mail("c"))
    messages = list(iter_source_messages([tmp_path]))
    assert subjects(messages) == ["a", "b"]
    assert messages[1].origin == str(tmp_path / "b.eml")


def test_several_paths_are_read_in_the_order_given(tmp_path: Path) -> None:
    first, second = tmp_path / "2.eml", tmp_path / "1.eml"
    first.write_bytes(mail("given first"))
    second.write_bytes(mail("given second"))
    assert subjects(list(iter_source_messages([first, second]))) == ["given first", "given second"]


def test_missing_path_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(mail("good"))
    missing = tmp_path / "missing.eml"
    with pytest.raises(SourceError, match=r"missing\.eml: no such file or folder"):
        iter_source_messages([good, missing])


def test_path_that_is_neither_file_nor_folder_is_a_source_error_naming_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.eml"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match=r"pipe\.eml: neither a regular file nor a folder"):
        iter_source_messages([fifo])


def test_empty_file_is_yielded_for_the_parser_to_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "empty.eml"
    path.write_bytes(b"")
    assert list(iter_source_messages([path])) == [SourceMessage(str(path), b"")]

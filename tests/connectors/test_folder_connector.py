"""The folder connector: the conformance suite over maildirs and plain folders, and what disks add."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from dataclasses import fields
from pathlib import Path

import pytest

from connectors.base import Connector, ConnectorError, MessageRef
from connectors.folder import FolderConnector, FolderSettings
from connectors.registry import build_settings, make_connector
from connectors.testing import ConnectorConformance, make_message
from engine.config.model import load_config

BASE_TIME_NS = 1_700_000_000 * 10**9


def make_maildir(folder: Path) -> Path:
    """Create an empty maildir and return it."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def put_file(path: Path, raw: bytes, age_order: int) -> Path:
    """Write a message file whose modification time is ``age_order`` seconds after a fixed moment."""
    path.write_bytes(raw)
    os.utime(path, ns=(BASE_TIME_NS + age_order * 10**9,) * 2)
    return path


def listed(connector: Connector) -> list[str]:
    """Connect, list the waiting ids, close."""

    async def run() -> list[str]:
        await connector.connect()
        try:
            return [ref.id for ref in await connector.list_waiting()]
        finally:
            await connector.close()

    return asyncio.run(run())


def acknowledge_all(connector: Connector) -> None:
    """Connect, acknowledge every waiting message, close."""

    async def run() -> None:
        await connector.connect()
        for ref in await connector.list_waiting():
            await connector.acknowledge(ref)
        await connector.close()

    asyncio.run(run())


def folder_connector(base: Path, **settings: str) -> FolderConnector:
    """A folder connector built the way the service builds it (from a config mapping)."""
    connector = make_connector("helpdesk", {"type": "folder", **settings}, base)
    assert isinstance(connector, FolderConnector)
    return connector


# ---- the conformance suite ----------------------------------------------------------------------


class FolderConformance(ConnectorConformance):
    """Conformance over a folder in tmp_path; subclasses choose maildir or plain, and processed_folder."""

    maildir: bool = True
    processed_folder: str | None = None

    @pytest.fixture(autouse=True)
    def empty_folder(self, tmp_path: Path) -> None:
        """A fresh, empty mailbox folder for each test."""
        self.base = tmp_path
        self.folder = tmp_path / "mailbox"
        if self.maildir:
            make_maildir(self.folder)
        else:
            self.folder.mkdir()
        self.serial = itertools.count(1)

    def make_connector(self) -> Connector:
        """A connector for ``mailbox`` in the test's folder."""
        settings = {"path": "mailbox"}
        if self.processed_folder is not None:
            settings["processed_folder"] = self.processed_folder
        return folder_connector(self.base, **settings)

    def deliver(self, raw: bytes) -> None:
        """Deliver as an MTA does: write under a temporary name, then rename into place."""
        n = next(self.serial)
        if self.maildir:
            name = f"{1_700_000_000 + n}.M{n:06d}P{os.getpid()}.conformance"
            written = put_file(self.folder / "tmp" / name, raw, n)
            written.rename(self.folder / "new" / name)
        else:
            written = put_file(self.folder / f".message-{n:04d}.eml", raw, n)
            written.rename(self.folder / f"message-{n:04d}.eml")

    def remaining(self) -> int:
        """Files in new/ and cur/, or .eml files."""
        if self.maildir:
            return sum(1 for sub in ("new", "cur") for p in (self.folder / sub).iterdir() if p.is_file())
        return sum(1 for p in self.folder.glob("*.eml") if p.is_file())


class TestMaildir(FolderConformance):
    """A maildir whose acknowledged messages are deleted."""


class TestMaildirMovingToAProcessedFolder(FolderConformance):
    """A maildir whose acknowledged messages are moved to ``processed``."""

    processed_folder = "processed"


class TestPlainFolder(FolderConformance):
    """A directory of .eml files whose acknowledged messages are deleted."""

    maildir = False


class TestPlainFolderMovingToAProcessedFolder(FolderConformance):
    """A directory of .eml files whose acknowledged messages move into a subfolder of it."""

    maildir = False
    processed_folder = "mailbox/processed"


# ---- settings ------------------------------------------------------------------------------------


def test_the_bare_folder_connector_reads_mailbox_beside_the_config(tmp_path: Path) -> None:
    """``connector: folder`` needs no path: it is ``mailbox`` in the config's folder."""
    (tmp_path / "mailbox").mkdir()
    put_file(tmp_path / "mailbox" / "one.eml", make_message("one"), 1)
    connector = folder_connector(tmp_path)
    assert connector.folder == tmp_path / "mailbox"
    assert listed(connector) == ["one.eml"]


def test_an_absolute_path_is_used_as_written(tmp_path: Path) -> None:
    """Only relative paths are taken against the config's folder."""
    elsewhere = make_maildir(tmp_path / "var" / "mail")
    assert folder_connector(tmp_path / "etc", path=str(elsewhere)).folder == elsewhere


@pytest.mark.parametrize(
    ("settings", "mistake"),
    [
        ({"path": "m", "proccessed_folder": "done"}, "no parameter 'proccessed_folder' (did you mean"),
        ({"path": 7}, "path must be text"),
        ({"path": ""}, "path must name a folder"),
        ({"path": "m", "processed_folder": "./m"}, "processed_folder must be another folder than path"),
    ],
)
def test_settings_mistakes_are_named(settings: dict[str, object], mistake: str) -> None:
    """Each wrong setting gives a message an admin can act on."""
    built, mistakes = build_settings("folder", {"type": "folder", **settings})
    assert built is None
    assert any(mistake in message for _, message in mistakes), mistakes


def test_settings_are_a_frozen_dataclass() -> None:
    """The validated settings are the documented fields with their defaults."""
    built, mistakes = build_settings("folder", {"type": "folder"})
    assert (built, mistakes) == (FolderSettings(type="folder", path="mailbox", processed_folder=None), [])


# ---- which files are messages, in which order ---------------------------------------------------


def test_plain_folder_lists_by_delivery_time_then_name(tmp_path: Path) -> None:
    """Oldest file first whatever its name; files delivered at the same moment in name order."""
    (tmp_path / "mailbox").mkdir()
    put_file(tmp_path / "mailbox" / "a-newest.eml", make_message("3"), 3)
    put_file(tmp_path / "mailbox" / "z-oldest.eml", make_message("1"), 1)
    put_file(tmp_path / "mailbox" / "c-same.eml", make_message("2c"), 2)
    put_file(tmp_path / "mailbox" / "b-same.eml", make_message("2b"), 2)
    assert listed(folder_connector(tmp_path)) == ["z-oldest.eml", "b-same.eml", "c-same.eml", "a-newest.eml"]


def test_maildir_lists_new_and_cur_together_oldest_first(tmp_path: Path) -> None:
    """A message an MUA already moved to cur/ is older than what waits in new/, so it comes first."""
    box = make_maildir(tmp_path / "mailbox")
    put_file(box / "new" / "1700000003.M3.host", make_message("newer"), 3)
    put_file(box / "cur" / "1700000001.M1.host:2,S", make_message("older, seen"), 1)
    put_file(box / "new" / "1700000002.M2.host", make_message("middle"), 2)
    assert listed(folder_connector(tmp_path)) == [
        "cur/1700000001.M1.host:2,S",
        "new/1700000002.M2.host",
        "new/1700000003.M3.host",
    ]


def test_maildir_tmp_is_never_read_nor_touched(tmp_path: Path) -> None:
    """A message still being written (tmp/) is not listed and survives acknowledging everything."""
    box = make_maildir(tmp_path / "mailbox")
    being_written = put_file(box / "tmp" / "1700000009.M9.host", b"From: half a mess", 9)
    put_file(box / "new" / "1700000001.M1.host", make_message("done"), 1)
    connector = folder_connector(tmp_path)
    assert listed(connector) == ["new/1700000001.M1.host"]
    acknowledge_all(connector)
    assert being_written.read_bytes() == b"From: half a mess"
    assert listed(connector) == []


def test_plain_folder_ignores_what_is_not_a_finished_eml_file(tmp_path: Path) -> None:
    """Temporary names, dot files, other files and subfolders are not messages."""
    box = tmp_path / "mailbox"
    (box / "sub").mkdir(parents=True)
    (box / "folder.eml").mkdir()
    for name in ("in-progress.eml.tmp", ".hidden.eml", "notes.txt", "sub/deeper.eml"):
        put_file(box / name, make_message(name), 1)
    put_file(box / "UPPER.EML", make_message("upper"), 2)
    assert listed(folder_connector(tmp_path)) == ["UPPER.EML"]


# ---- acknowledging -------------------------------------------------------------------------------


def test_acknowledged_messages_move_unchanged_into_a_created_processed_folder(tmp_path: Path) -> None:
    """The processed folder is created on first use; the file keeps its name and bytes."""
    box = make_maildir(tmp_path / "mailbox")
    raw = make_message("keep me")
    put_file(box / "new" / "1700000001.M1.host", raw, 1)
    acknowledge_all(folder_connector(tmp_path, processed_folder="archive/processed"))
    assert (tmp_path / "archive" / "processed" / "1700000001.M1.host").read_bytes() == raw
    assert list((box / "new").iterdir()) == []


def test_a_processed_maildir_receives_messages_in_its_cur(tmp_path: Path) -> None:
    """Moving into a maildir puts the message where a mail client will see it."""
    (tmp_path / "mailbox").mkdir()
    put_file(tmp_path / "mailbox" / "a.eml", make_message("a"), 1)
    done = make_maildir(tmp_path / "done")
    acknowledge_all(folder_connector(tmp_path, processed_folder="done"))
    assert [p.name for p in (done / "cur").iterdir()] == ["a.eml"]


def test_a_name_already_in_the_processed_folder_is_not_overwritten(tmp_path: Path) -> None:
    """A second ``ticket.eml`` is kept beside the first one, not over it."""
    (tmp_path / "mailbox").mkdir()
    first, second = make_message("first"), make_message("second")
    connector = folder_connector(tmp_path, processed_folder="done")
    put_file(tmp_path / "mailbox" / "ticket.eml", first, 1)
    acknowledge_all(connector)
    put_file(tmp_path / "mailbox" / "ticket.eml", second, 2)
    acknowledge_all(connector)
    kept = {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir()}
    assert kept == {"ticket.eml": first, "ticket.1.eml": second}


def test_processed_folder_must_not_be_where_mail_is_read(tmp_path: Path) -> None:
    """Moving into the maildir's own new/ would bring every message back: refused at connect."""
    make_maildir(tmp_path / "mailbox")
    connector = folder_connector(tmp_path, processed_folder="mailbox/new")
    with pytest.raises(ConnectorError, match=r"processed_folder .*mailbox/new"):
        asyncio.run(connector.connect())


# ---- errors name the path ------------------------------------------------------------------------


def test_a_missing_mailbox_folder_is_reported_with_its_path(tmp_path: Path) -> None:
    """No folder: a ConnectorError (retried by the service) that says which folder."""
    with pytest.raises(ConnectorError, match=re.escape(f"{tmp_path / 'mailbox'} does not exist")):
        asyncio.run(folder_connector(tmp_path).connect())
    (tmp_path / "mailbox").write_text("not a folder")
    with pytest.raises(ConnectorError, match=re.escape(f"{tmp_path / 'mailbox'} is not a folder")):
        asyncio.run(folder_connector(tmp_path).connect())


def test_fetch_and_acknowledge_failures_name_the_file(tmp_path: Path) -> None:
    """A vanished file, an unreadable entry and an impossible move are ConnectorErrors with the path."""
    (tmp_path / "mailbox").mkdir()
    (tmp_path / "mailbox" / "odd.eml").mkdir()
    (tmp_path / "blocked").write_text("a file where the processed folder should be")
    put_file(tmp_path / "mailbox" / "real.eml", make_message("real"), 1)
    connector = folder_connector(tmp_path, processed_folder="blocked")

    async def run() -> None:
        await connector.connect()
        with pytest.raises(ConnectorError, match=r"gone\.eml: the message is no longer in the folder"):
            await connector.fetch(MessageRef("gone.eml"))
        with pytest.raises(ConnectorError, match=r"odd\.eml: cannot read"):
            await connector.fetch(MessageRef("odd.eml"))
        with pytest.raises(ConnectorError, match=r"real\.eml: cannot remove to .*blocked"):
            await connector.acknowledge(MessageRef("real.eml"))

    asyncio.run(run())
    assert (tmp_path / "mailbox" / "real.eml").exists()


@pytest.mark.parametrize("ident", ["../secret.eml", "/etc/passwd", "sub/x.eml", "tmp/1.host", ".."])
def test_an_id_outside_the_listed_files_is_refused(tmp_path: Path, ident: str) -> None:
    """Ids are only ever names this connector listed; anything else never reaches the disk."""
    make_maildir(tmp_path / "mailbox")
    (tmp_path / "secret.eml").write_bytes(b"secret")
    connector = folder_connector(tmp_path)

    async def run() -> None:
        await connector.connect()
        with pytest.raises(ConnectorError, match="is not a message id of this folder"):
            await connector.fetch(MessageRef(ident))
        with pytest.raises(ConnectorError, match="is not a message id of this folder"):
            await connector.acknowledge(MessageRef(ident))

    asyncio.run(run())
    assert (tmp_path / "secret.eml").exists()


# ---- the documentation ---------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"


def test_the_folder_examples_in_the_connector_guide_are_valid_configs(tmp_path: Path) -> None:
    """Every ```yaml block of docs/connectors.md that uses the folder connector loads as written."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    folder_blocks = [b for b in blocks if "type: folder" in b or "connector: folder" in b]
    assert folder_blocks
    for number, block in enumerate(folder_blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block, encoding="utf-8")
        assert all(a.connector_type == "folder" for a in load_config(path).accounts)


def test_the_connector_guide_documents_every_folder_setting() -> None:
    """Each field of FolderSettings has a row in the reference table."""
    text = DOC.read_text(encoding="utf-8")
    missing = [f.name for f in fields(FolderSettings) if f.name != "type" and f"| `{f.name}` |" not in text]
    assert not missing

"""The IMAP connector (aioimaplib): a folder read by UID, acknowledged by UID EXPUNGE or MOVE, IDLE push.

Messages are addressed as ``"{UIDVALIDITY}:{UID}"`` and listed by ascending UID (oldest first),
with their sizes (``RFC822.SIZE``). Fetching uses ``BODY.PEEK[]``, so it never sets ``\\Seen`` or
changes anything else. ``fetch_many`` and ``acknowledge_many`` do the same for several messages with
one command of each kind (a UID set), which the service uses to save round trips.

Acknowledging:

- with ``processed_folder``: ``UID MOVE`` where the server has MOVE, else ``UID COPY`` followed by
  the deletion below;
- deletion: ``UID STORE +FLAGS.SILENT (\\Deleted)``, then ``UID EXPUNGE`` of those UIDs where the
  server has UIDPLUS. ``acknowledge_many`` sends that EXPUNGE and leaves it in flight, so that the
  server expunges while the service works on its next batch; its answer is read (and a failure
  raised) by the next command that depends on it: the next acknowledgement, ``list_waiting``,
  ``wait_for_new`` or ``close``. The messages are \\Deleted already, so no listing shows them.
  Without UIDPLUS a plain EXPUNGE would also remove messages someone else
  flagged \\Deleted in the folder, so it is sent only when ``UID SEARCH DELETED`` finds no
  \\Deleted message but ours; otherwise ours stay flagged (hidden from ``list_waiting``, which
  lists UNDELETED messages). Another client flagging a message between that SEARCH and the
  EXPUNGE is the one race left, and only on such old servers.
- an EXPUNGE that never reached the server (the connection died after the STORE) leaves messages
  flagged \\Deleted that no later EXPUNGE of ours names: ``list_half_acknowledged`` lists every
  \\Deleted message (``UID SEARCH DELETED``), and ``finish_acknowledging`` expunges those of
  them the service found in its ledger, by UID (or, without UIDPLUS, as above).
- a ref whose UIDVALIDITY is not the folder's current one is refused (``ConnectorError``): after
  the folder was recreated, its UID may name a different message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from pathlib import Path

from aioimaplib.aioimaplib import Command, Response  # type: ignore[import-untyped]

from connectors.base import Connector, ConnectorError, ConnectorSettings, MessageRef
from connectors.credentials import token_from_command
from connectors.imap.session import ImapSession
from connectors.imap.settings import ImapSettings
from connectors.imap.wire import (
    body_literals,
    mailbox_argument,
    response_text,
    search_result,
    sizes_of,
    uid_set,
)

log = logging.getLogger(__name__)

IDLE_RENEW_SECONDS = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
KEEPALIVE_SECONDS = 5 * 60  # NOOP this often when waiting without IDLE
SIZES_PER_COMMAND = 200  # RFC822.SIZE asked for this many messages per command (short replies)
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_NEW_MAIL = re.compile(rb"^\d+ (EXISTS|RECENT)\b", re.IGNORECASE)


class ImapConnector(Connector):
    """Reads one IMAP folder; ``MessageRef.id`` is ``"{UIDVALIDITY}:{UID}"`` (see the module docstring).

    The session stays open between passes; ``wait_for_new`` uses IDLE when the server offers it
    and ``idle`` is on, else waits with a NOOP every few minutes to keep the session alive.
    """

    name = "imap"
    Settings = ImapSettings
    supports_push = True

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, ImapSettings)
        self.imap = settings
        self.where = f"account {account!r} (imap {settings.username}@{settings.host}:{settings.server_port})"
        self._session: ImapSession | None = None
        self._uidvalidity: int | None = None
        self._flagged_by_us: set[int] = set()  # \Deleted but not yet expunged (servers without UIDPLUS)
        self._expunging: asyncio.Future[Response] | None = None  # a UID EXPUNGE left in flight

    # --- session ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open a session, authenticate, select the folder (and create the processed folder)."""
        await self.close()
        session = ImapSession(self.where, self.imap.host, self.imap.server_port, self.imap.timeout)
        try:
            await session.open(self.imap.security, self._tls_context())
            if self.imap.auth == "xoauth2":
                token = self.imap.oauth_token or await token_from_command(
                    self.imap.oauth_token_command or "", self.where, self.base_dir, self.imap.timeout
                )
                await session.xoauth2(self.imap.username, token)
            else:
                await session.login(self.imap.username, self.imap.password or "")
            protocol = session.protocol
            selected = await session.run(protocol.select(mailbox_argument(self.imap.folder)), "SELECT")
            if selected.result != "OK":
                session.fail(f"folder {self.imap.folder!r} cannot be opened: {response_text(selected)}")
            self._uidvalidity = _uidvalidity(selected)
            if self._uidvalidity is None:
                session.fail(f"the server did not give folder {self.imap.folder!r} a UIDVALIDITY")
            if self.imap.processed_folder is not None:  # NO [ALREADYEXISTS] is the usual answer
                create = protocol.simple_command("CREATE", mailbox_argument(self.imap.processed_folder))
                await session.run(create, "CREATE")
        except BaseException:
            await session.close()
            raise
        self._session = session
        self._flagged_by_us.clear()

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.imap.ca_file is not None:
            path = Path(self.imap.ca_file).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise ConnectorError(f"{self.where}: ca_file {str(path)!r} cannot be used: {exc}") from None
        return context

    @property
    def session(self) -> ImapSession:
        """The open session (``ConnectorError`` when not connected)."""
        if self._session is None:
            raise ConnectorError(f"{self.where}: not connected")
        return self._session

    async def close(self) -> None:
        """LOGOUT and close the connection; never raises."""
        try:
            await self._settle_expunge()
        except Exception as exc:  # still flagged \Deleted: the next pass expunges them if ours
            log.warning("%s: the last UID EXPUNGE failed: %s", self.where, exc)
        self._expunging = None
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- messages --------------------------------------------------------------------------------

    async def list_waiting(self) -> list[MessageRef]:
        """The folder's messages not flagged \\Deleted, by ascending UID, with their sizes."""
        session = self.session
        await self._settle_expunge()
        # a server announces new mail (EXISTS) between commands, and SEARCH sees only announced mail
        session.check(await session.run(session.protocol.simple_command("NOOP"), "NOOP"), "NOOP")
        found = await session.run(
            session.protocol.search("UNDELETED", charset=None, by_uid=True), "UID SEARCH"
        )
        uids = sorted(search_result(session.check(found, "UID SEARCH")))
        sizes: dict[int, int] = {}
        for first in range(0, len(uids), SIZES_PER_COMMAND):
            chunk = uids[first : first + SIZES_PER_COMMAND]
            command = session.protocol.fetch(uid_set(chunk), "(RFC822.SIZE)", by_uid=True)
            sizes.update(sizes_of(session.check(await session.run(command, "UID FETCH"), "UID FETCH")))
        return [MessageRef(f"{self._uidvalidity}:{uid}", sizes.get(uid)) for uid in uids]

    async def fetch(self, ref: MessageRef) -> bytes:
        """The message's raw bytes (``UID FETCH BODY.PEEK[]``; ``\\Seen`` is left alone)."""
        session = self.session
        uid = self._uid_of(ref, "fetch")
        # the timeout restarts with every chunk received, so a 25 MB message is not cut short
        command = session.protocol.fetch(str(uid), "BODY.PEEK[]", by_uid=True, timeout=self.imap.timeout)
        response = session.check(await session.run(command, "UID FETCH", timeout=None), "UID FETCH")
        raw = body_literals(response, only=uid).get(uid)
        if raw is None:
            session.fail(f"message {ref.id} is no longer in folder {self.imap.folder!r}")
        return raw

    async def fetch_many(self, refs: Sequence[MessageRef]) -> list[bytes]:
        """The raw bytes of several messages with one ``UID FETCH``, in order, up to one that is gone."""
        session = self.session
        uids = [self._uid_of(ref, "fetch") for ref in refs]
        command = session.protocol.fetch(uid_set(uids), "BODY.PEEK[]", by_uid=True, timeout=self.imap.timeout)
        response = session.check(await session.run(command, "UID FETCH", timeout=None), "UID FETCH")
        bodies = body_literals(response)
        del response  # the literals are copied out: do not hold the batch twice
        raws: list[bytes] = []
        for uid in uids:
            raw = bodies.pop(uid, None)
            if raw is None:
                break
            raws.append(raw)
        # the first one gone (or a server that names no UIDs): ``fetch`` says which, or reads it alone
        return raws or [await self.fetch(refs[0])]

    async def acknowledge(self, ref: MessageRef) -> None:
        """Move the message to the processed folder, or delete and expunge it; gone already is fine."""
        await self.acknowledge_many([ref])
        await self._settle_expunge()

    async def acknowledge_many(self, refs: Sequence[MessageRef]) -> None:
        """``acknowledge`` for several messages, with one command of each kind for all of them.

        The UID EXPUNGE is left in flight (see the module): it is settled by the next command that
        depends on it, which raises its failure.
        """
        session = self.session
        await self._settle_expunge()
        uids = [self._uid_of(ref, "acknowledge") for ref in refs]
        if not uids:
            return
        which = uid_set(uids)
        capabilities = session.capabilities
        target = self.imap.processed_folder
        if target is not None:
            verb = "MOVE" if "MOVE" in capabilities else "COPY"
            moved = await self._uid_command(verb, which, mailbox_argument(target))
            session.check(moved, f"UID {verb} to {target!r}")
            if verb == "MOVE":
                return
        stored = await self._uid_command("STORE", which, "+FLAGS.SILENT", r"(\Deleted)")
        session.check(stored, "UID STORE \\Deleted")
        if "UIDPLUS" in capabilities:
            await self._send_expunge(which)
            return
        await self._expunge_without_uidplus(uids)

    async def list_half_acknowledged(self) -> list[MessageRef]:
        """Every message of the folder flagged \\Deleted (by us or anyone), by ascending UID."""
        session = self.session
        await self._settle_expunge()
        found = await session.run(session.protocol.search("DELETED", charset=None, by_uid=True), "UID SEARCH")
        uids = sorted(search_result(session.check(found, "UID SEARCH")))
        return [MessageRef(f"{self._uidvalidity}:{uid}") for uid in uids]

    async def finish_acknowledging(self, refs: Sequence[MessageRef]) -> None:
        """Expunge these \\Deleted messages (the service's own, by its ledger), and no other."""
        session = self.session
        await self._settle_expunge()
        uids = [self._uid_of(ref, "expunge") for ref in refs]
        if not uids:
            return
        if "UIDPLUS" in session.capabilities:
            await self._send_expunge(uid_set(uids))
            await self._settle_expunge()
            return
        await self._expunge_without_uidplus(uids)

    async def _expunge_without_uidplus(self, uids: Sequence[int]) -> None:
        """EXPUNGE, if no \\Deleted message but ours is in the folder (see the module docstring)."""
        session = self.session
        self._flagged_by_us.update(uids)
        found = await session.run(session.protocol.search("DELETED", charset=None, by_uid=True), "UID SEARCH")
        others = search_result(session.check(found, "UID SEARCH")) - self._flagged_by_us
        if others:
            log.warning(
                "%s: not expunging yet: %d other message(s) in %r are flagged \\Deleted and the server "
                "lacks UIDPLUS; ours stay flagged (not listed again) until they are gone",
                self.where, len(others), self.imap.folder,
            )  # fmt: skip
            return
        expunge = Command("EXPUNGE", session.protocol.new_tag(), loop=session.protocol.loop)
        session.check(await session.run(session.protocol.execute(expunge), "EXPUNGE"), "EXPUNGE")
        self._flagged_by_us.clear()

    async def _send_expunge(self, which: str) -> None:
        """Send ``UID EXPUNGE which`` and return once it is on the wire, its answer still to come."""
        protocol = self.session.protocol
        command = Command("EXPUNGE", protocol.new_tag(), which, prefix="UID", loop=protocol.loop)
        self._expunging = expunging = asyncio.ensure_future(
            self.session.run(protocol.execute(command), "UID EXPUNGE")
        )
        while protocol.pending_async_commands.get("EXPUNGE") is not command and not expunging.done():
            await asyncio.sleep(0)  # a few turns of the loop: until ``execute`` has sent it

    async def _settle_expunge(self) -> None:
        """Read the answer of a UID EXPUNGE left in flight; raise its failure."""
        expunging, self._expunging = self._expunging, None
        if expunging is not None:
            self.session.check(await expunging, "UID EXPUNGE")

    async def _uid_command(self, verb: str, *args: str) -> Response:
        session = self.session
        protocol = session.protocol
        untagged = "FETCH" if verb == "STORE" else None
        command = Command(
            verb, protocol.new_tag(), *args, prefix="UID", untagged_resp_name=untagged, loop=protocol.loop
        )
        return await session.run(session.protocol.execute(command), f"UID {verb}")

    def _uid_of(self, ref: MessageRef, action: str) -> int:
        validity, _, uid = ref.id.partition(":")
        if not (validity.isdigit() and uid.isdigit()):
            raise ConnectorError(f"{self.where}: {ref.id!r} is not an IMAP message id (UIDVALIDITY:UID)")
        if int(validity) != self._uidvalidity:
            raise ConnectorError(
                f"{self.where}: will not {action} message {ref.id}: folder {self.imap.folder!r} now has "
                f"UIDVALIDITY {self._uidvalidity} (it was recreated), so UID {uid} may be another message"
            )
        return int(uid)

    # --- push ------------------------------------------------------------------------------------

    async def wait_for_new(self, timeout: float) -> bool:
        """IDLE until the server reports new mail (True) or ``timeout`` passes (False)."""
        session = self.session
        await self._settle_expunge()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        use_idle = self.imap.idle and "IDLE" in session.capabilities
        while (remaining := deadline - loop.time()) > 0:
            if use_idle:
                if await self._idle(min(remaining, IDLE_RENEW_SECONDS)):
                    return True
            else:
                await asyncio.sleep(min(remaining, KEEPALIVE_SECONDS))
                if deadline - loop.time() > 0:
                    session.check(await session.run(session.protocol.simple_command("NOOP"), "NOOP"), "NOOP")
        return False

    async def _idle(self, seconds: float) -> bool:
        """One IDLE command of at most ``seconds``: True if the server reported new mail."""
        session = self.session
        protocol = session.protocol
        while not protocol.idle_queue.empty():  # leftovers of an earlier IDLE
            protocol.idle_queue.get_nowait()
        idle = asyncio.ensure_future(protocol.idle())
        try:
            accepted = asyncio.ensure_future(protocol.wait_for_idle_response())
            try:
                await session.run(asyncio.wait({idle, accepted}, return_when=asyncio.FIRST_COMPLETED), "IDLE")
            finally:
                accepted.cancel()
            if idle.done():  # answered without a continuation: refused, or ended at once
                session.check(await session.run(idle, "IDLE"), "IDLE")
                return False
            new_mail = await self._news_during_idle(seconds)
        finally:
            session.end_idle()  # DONE, also when the wait is cancelled
        session.check(await session.run(idle, "IDLE DONE"), "IDLE")
        return new_mail

    async def _news_during_idle(self, seconds: float) -> bool:
        session = self.session
        queue = session.protocol.idle_queue
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            get = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({get, session.lost}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                get.cancel()
            if not get.done() or get.cancelled():
                if session.lost.done():
                    reason = session.lost.result()
                    session.abort()
                    session.fail(f"connection lost during IDLE{reason}")
                return False
            if any(
                _NEW_MAIL.match(bytes(line)) for line in get.result() if isinstance(line, bytes | bytearray)
            ):
                return True
        return False


def _uidvalidity(selected: Response) -> int | None:
    for line in selected.lines:
        match = _UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    return None

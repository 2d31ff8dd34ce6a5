"""The POP3 connector: plain, STLS or POP3S, USER/PASS or XOAUTH2, messages addressed by UIDL.

The standard library's ``poplib`` is blocking, so every call runs on one worker thread owned by
the connector: one POP3 session is a single conversation, and a single-thread executor keeps its
commands in order even when the awaiting task is cancelled mid-command.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import poplib
import ssl
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from connectors.base import (
    AuthenticationError,
    Connector,
    ConnectorError,
    ConnectorSettings,
    MessageRef,
    check_server_address,
)
from connectors.credentials import check_credentials, check_plain_login
from connectors.pop3_wire import base64_text, command, drop, is_continuation, reply_text, retrieve
from connectors.port_mismatch import foreign_greeting, not_tls, silent_greeting

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_PORTS = {"plain": 110, "stls": 110, "tls": 995}
# RFC 3206 response codes that mean "try again later", not "your credentials are wrong"
TRANSIENT_CODES = (b"[IN-USE]", b"[SYS/TEMP]")


@dataclass(frozen=True)
class Pop3Settings(ConnectorSettings):
    """``connector: {type: pop3, host: ..., username: ..., password: ...}``.

    ``port`` defaults to 995 for ``security: tls`` and 110 for ``plain`` and ``stls``.
    ``auth: xoauth2`` takes a bearer token from ``oauth_token`` or from the standard output of
    ``oauth_token_command`` (run by the shell at every connection, so it can refresh the token).
    ``ca_file`` adds a trust root (relative paths are from the config's folder); certificates are
    always verified. ``max_messages_per_session``: after that many deletions the connector QUITs,
    so that they take effect, and reconnects. ``security: plain`` logs in only to a loopback host,
    unless ``allow_plain_login: true`` (the password would cross the network unencrypted).
    """

    host: str
    username: str
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    security: Literal["plain", "stls", "tls"] = "tls"
    auth: Literal["user", "xoauth2"] = "user"
    oauth_token: str | None = field(default=None, repr=False)
    oauth_token_command: str | None = None
    ca_file: str | None = None
    timeout: float = 30
    max_messages_per_session: int | None = None
    allow_plain_login: bool = False

    def __post_init__(self) -> None:
        check_server_address(self.host, self.port, self.timeout)
        if self.max_messages_per_session is not None and self.max_messages_per_session < 1:
            raise ValueError(
                f"max_messages_per_session must be at least 1, not {self.max_messages_per_session}"
            )
        check_credentials(self, "user")
        check_plain_login(self, "tls or stls")

    @property
    def server_port(self) -> int:
        """The port to connect to: the configured one, or the default for the security mode."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


class Pop3Connector(Connector):
    """Reads a POP3 maildrop; ``MessageRef.id`` is the message's UIDL.

    UIDLs are mapped to message numbers afresh in every session (a number never crosses
    sessions). ``fetch`` is RETR and never marks or deletes anything; ``acknowledge`` is DELE of
    the message's current number, a no-op when its UIDL is no longer on the server.

    POP3 deletes only at QUIT: ``close`` sends QUIT and must be awaited for the deletions to
    count, and ``max_messages_per_session: N`` QUITs after every N deletions (the next command
    reconnects and maps the UIDLs again). This is at-least-once delivery: if the connection drops
    before QUIT, the messages marked for deletion in that session come back in the next one. The
    ledger makes each of them a duplicate (no second effect), and it is then deleted.
    """

    name = "pop3"
    Settings = Pop3Settings

    def __init__(self, account: str, settings: ConnectorSettings, base_dir: Path) -> None:
        super().__init__(account, settings, base_dir)
        assert isinstance(settings, Pop3Settings)
        self.pop3 = settings
        self.where = f"account {account!r} (pop3 {settings.username}@{settings.host}:{settings.server_port})"
        self._executor: ThreadPoolExecutor | None = None
        self._opened = False  # between connect() and close(): a lost session is reopened on demand
        # state of the current session, touched only on the worker thread
        self._client: poplib.POP3 | None = None
        self._numbers: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._deleted_in_session = 0

    # --- the async interface: every call goes to the single worker thread --------------------------

    async def connect(self) -> None:
        """Open and authenticate a session (a session already open is kept)."""
        try:
            await self._run(self._ensure_session)
        except BaseException:
            if not self._opened and self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            raise
        self._opened = True

    async def list_waiting(self) -> list[MessageRef]:
        """Every message's UIDL and size, in the server's order (oldest first)."""
        return await self._run(self._list)

    async def fetch(self, ref: MessageRef) -> bytes:
        """The message's raw bytes (RETR), as the server sends them (CRLF line ends)."""
        return await self._run(lambda: self._fetch(ref.id))

    async def acknowledge(self, ref: MessageRef) -> None:
        """Mark the message deleted (takes effect at the next QUIT); gone already is fine."""
        await self._run(lambda: self._acknowledge(ref.id))

    async def fetch_many(self, refs: Sequence[MessageRef]) -> list[bytes]:
        """Several messages in one trip to the worker thread; a prefix, ending where a session must.

        With ``max_messages_per_session`` no more are returned than the session may still delete,
        so that a batch's deletions are all in one session (QUIT follows the last of them).
        """
        uidls = [ref.id for ref in refs]
        return await self._run(lambda: self._fetch_many(uidls))

    async def acknowledge_many(self, refs: Sequence[MessageRef]) -> None:
        """``acknowledge`` for several messages, in one trip to the worker thread."""
        uidls = [ref.id for ref in refs]
        await self._run(lambda: self._acknowledge_many(uidls))

    async def close(self) -> None:
        """QUIT, so that the deletions take effect; logs, never raises, if that fails."""
        self._opened = False
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._quit_quietly)
        except Exception as exc:  # close never raises
            log.warning("pop3 close failed account=%s error=%s", self.account, exc)
        finally:
            executor.shutdown(wait=False)

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pop3-{self.account}")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # --- the session, on the worker thread ---------------------------------------------------------

    def _ensure_session(self) -> poplib.POP3:
        if self._client is not None:
            return self._client
        client = self._open_client()
        try:
            self._authenticate(client)
            self._map_uidls(client)
        except BaseException:
            drop(client)
            raise
        self._client, self._deleted_in_session = client, 0
        s = self.pop3
        log.info(
            "pop3 connected account=%s server=%s:%d messages=%d",
            self.account, s.host, s.server_port, len(self._numbers),
        )  # fmt: skip
        return client

    def _session(self) -> poplib.POP3:
        if self._client is None and not self._opened:
            raise ConnectorError(f"{self.where}: not connected")
        return self._ensure_session()

    def _open_client(self) -> poplib.POP3:
        s, port = self.pop3, self.pop3.server_port
        context = self._ssl_context() if s.security != "plain" else None
        try:
            if s.security == "tls":
                return poplib.POP3_SSL(s.host, port, timeout=s.timeout, context=context)
            client = poplib.POP3(s.host, port, timeout=s.timeout)
        except poplib.error_proto as exc:  # the first line was not +OK: another protocol's greeting?
            greeting = exc.args[0] if exc.args and isinstance(exc.args[0], bytes) else b""
            explained = foreign_greeting("POP3", greeting) if greeting else None
            if explained is not None:
                raise ConnectorError(f"{self.where}: {explained}") from None
            self._fail("cannot connect", exc)
        except TimeoutError:
            if s.security == "tls":
                raise ConnectorError(f"{self.where}: no answer within {s.timeout:g} s") from None
            raise ConnectorError(f"{self.where}: {silent_greeting('POP3', s.timeout, 'tls')}") from None
        except OSError as exc:
            advice = not_tls(exc, "`security: stls` or `plain`")
            if advice is not None:
                raise ConnectorError(f"{self.where}: cannot connect: {advice}") from None
            self._fail("cannot connect", exc)
        if s.security == "stls":
            try:
                client.stls(context)
            except (OSError, poplib.error_proto) as exc:
                drop(client)
                if "not supported" in str(exc):
                    raise ConnectorError(f"{self.where}: the server does not offer STLS") from None
                self._fail("STLS failed", exc)
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()  # verifies the certificate and the host name
        if self.pop3.ca_file is not None:
            path = self.base_dir / Path(self.pop3.ca_file).expanduser()
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise ConnectorError(f"{self.where}: ca_file {str(path)!r} cannot be used: {exc}") from None
        return context

    def _authenticate(self, client: poplib.POP3) -> None:
        try:
            if self.pop3.auth == "xoauth2":
                self._xoauth2(client)
            else:
                client.user(self.pop3.username)
                client.pass_(self.pop3.password or "")
        except poplib.error_proto as exc:
            reply = exc.args[0] if exc.args else b""
            if isinstance(reply, bytes) and not any(code in reply for code in TRANSIENT_CODES):
                raise AuthenticationError(f"{self.where}: login refused: {reply_text(reply)}") from None
            self._fail("login failed", exc)
        except OSError as exc:
            self._fail("login failed", exc)

    def _xoauth2(self, client: poplib.POP3) -> None:
        try:
            mechanisms = [m.upper() for m in client.capa().get("SASL", [])]
        except poplib.error_proto:
            mechanisms = []
        if "XOAUTH2" not in mechanisms:
            offered = " ".join(mechanisms) or "none"
            raise AuthenticationError(f"{self.where}: the server does not offer XOAUTH2 (SASL: {offered})")
        token = self.pop3.oauth_token or self._token_from_command()
        initial = f"user={self.pop3.username}\x01auth=Bearer {token}\x01\x01".encode()
        reply = command(client, b"AUTH XOAUTH2")
        if is_continuation(reply):  # RFC 5034: the response goes on its own line (tokens are long)
            reply = command(client, base64.b64encode(initial))
            if is_continuation(reply):  # an error report in base64 JSON; an empty line ends the exchange
                detail = base64_text(reply[1:].strip())
                reply = command(client, b"") + (f" ({detail})".encode() if detail else b"")
        if not reply.startswith(b"+OK"):
            raise poplib.error_proto(reply)

    def _token_from_command(self) -> str:
        command = self.pop3.oauth_token_command or ""
        try:
            done = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=self.pop3.timeout,
                cwd=self.base_dir,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AuthenticationError(f"{self.where}: oauth_token_command failed: {exc}") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}, no token"])[-1]
            raise AuthenticationError(f"{self.where}: oauth_token_command failed: {why}")
        return token

    def _map_uidls(self, client: poplib.POP3) -> None:
        try:
            _, uidl_lines, _ = client.uidl()
            _, list_lines, _ = client.list()
        except (OSError, poplib.error_proto) as exc:
            self._fail("UIDL failed", exc)
        sizes_by_number: dict[int, int] = {}
        for line in list_lines:
            listed, _, size = line.partition(b" ")
            sizes_by_number[int(listed)] = int(size.split()[0]) if size.strip() else 0
        self._numbers, self._sizes = {}, {}
        for line in uidl_lines:
            number_text, _, uidl_bytes = line.partition(b" ")
            uidl, number = uidl_bytes.strip().decode("latin-1"), int(number_text)
            self._numbers[uidl] = number
            self._sizes[uidl] = sizes_by_number.get(number, 0)

    def _list(self) -> list[MessageRef]:
        client = self._session()
        self._map_uidls(client)
        return [MessageRef(uidl, self._sizes.get(uidl)) for uidl in self._numbers]

    def _fetch(self, uidl: str) -> bytes:
        client = self._session()
        number = self._numbers.get(uidl)
        if number is None:
            raise ConnectorError(f"{self.where}: message {uidl} is no longer in the mailbox")
        try:
            return retrieve(client, number)
        except (OSError, poplib.error_proto) as exc:
            self._fail(f"RETR of message {uidl} failed", exc)

    def _fetch_many(self, uidls: list[str]) -> list[bytes]:
        self._session()
        limit = self.pop3.max_messages_per_session
        room = len(uidls) if limit is None else max(1, limit - self._deleted_in_session)
        raws: list[bytes] = []
        for uidl in uidls[:room]:
            try:
                raws.append(self._fetch(uidl))
            except ConnectorError:
                if not raws:
                    raise
                break  # those fetched are good; the next fetch reports the failure
        return raws

    def _acknowledge_many(self, uidls: list[str]) -> None:
        for uidl in uidls:
            self._acknowledge(uidl)

    def _acknowledge(self, uidl: str) -> None:
        client = self._session()
        number = self._numbers.get(uidl)
        if number is None:
            return
        try:
            client.dele(number)
        except (OSError, poplib.error_proto) as exc:
            self._fail(f"DELE of message {uidl} failed", exc)
        del self._numbers[uidl]
        self._deleted_in_session += 1
        limit = self.pop3.max_messages_per_session
        if limit is not None and self._deleted_in_session >= limit:
            self._quit()  # the deletions take effect now; the next command reconnects

    def _quit(self) -> None:
        client, self._client = self._client, None
        self._numbers, self._sizes = {}, {}
        if client is None:
            return
        deleted, self._deleted_in_session = self._deleted_in_session, 0
        try:
            client.quit()
        except (OSError, poplib.error_proto) as exc:
            drop(client)
            lost = f"{deleted} deletion(s) may not have taken effect"
            raise ConnectorError(f"{self.where}: QUIT failed, {lost}: {reply_text(exc)}") from None
        log.info("pop3 quit account=%s deleted=%d", self.account, deleted)

    def _quit_quietly(self) -> None:
        try:
            self._quit()
        except ConnectorError as exc:
            log.warning("pop3 close account=%s error=%s", self.account, exc)

    def _fail(self, doing: str, exc: Exception) -> NoReturn:
        """Raise ConnectorError; a session whose stream may be out of step is dropped (no QUIT)."""
        server_said_err = isinstance(exc, poplib.error_proto) and isinstance(
            exc.args[:1] and exc.args[0], bytes
        )
        if not server_said_err and self._client is not None:
            log.warning(
                "pop3 connection lost account=%s deletions_lost=%d", self.account, self._deleted_in_session
            )
            drop(self._client)
            self._client, self._numbers, self._sizes = None, {}, {}
        detail = reply_text(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = f"certificate not trusted: {exc.verify_message}"
        raise ConnectorError(f"{self.where}: {doing}: {detail}") from None

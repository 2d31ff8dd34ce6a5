"""The IMAP connector against a real Dovecot: conformance, TLS, authentication, UIDs, MOVE, IDLE, XOAUTH2."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot, DovecotError, free_port, start_dovecot

from connectors.base import AuthenticationError, Connector, ConnectorError
from connectors.imap.wire import imap_utf7, xoauth2_initial_response
from connectors.registry import build_settings, make_connector
from connectors.testing import ConnectorConformance, make_large_message, make_message, message_id

User = tuple[str, str]


def imap(dovecot: Dovecot, user: tuple[str, str | None], **settings: Any) -> Connector:
    """An IMAP connector for ``user`` on the plain port, with ``settings`` overriding the defaults."""
    name, password = user
    raw = {"type": "imap", "host": dovecot.host, "port": dovecot.imap_port, "security": "plain"}
    raw |= {"username": name, "password": password, "timeout": 10, **settings}
    return make_connector("helpdesk", raw, Path("."))


@contextlib.asynccontextmanager
async def session(connector: Connector) -> AsyncIterator[Connector]:
    """The connector connected, then closed."""
    await connector.connect()
    try:
        yield connector
    finally:
        await connector.close()


class TestImapConnector(ConnectorConformance):
    """The conformance suite over IMAPS on Dovecot."""

    @pytest.fixture(autouse=True)
    def _fresh_mailbox(self, dovecot: Dovecot, mailbox_user: User) -> None:
        self.dovecot, self.user = dovecot, mailbox_user

    def make_connector(self) -> Connector:
        """A connector for this test's user over implicit TLS, trusting the harness CA."""
        return imap(
            self.dovecot,
            self.user,
            security="tls",
            port=self.dovecot.imaps_port,
            ca_file=str(self.dovecot.ca_cert),
        )

    def deliver(self, raw: bytes) -> None:
        """APPEND to the user's INBOX."""
        self.dovecot.append(self.user[0], raw)

    def remaining(self) -> int:
        """Messages left in the user's INBOX."""
        return self.dovecot.count(self.user[0])


# --- transport security -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("security", "port_name"), [("plain", "imap_port"), ("starttls", "imap_port"), ("tls", "imaps_port")]
)
def test_each_security_mode_reads_and_deletes_with_the_harness_ca_trusted(
    dovecot: Dovecot, mailbox_user: User, security: str, port_name: str
) -> None:
    """Plain, STARTTLS and implicit-TLS sessions list, fetch and delete (TLS verified against the test CA)."""
    delivered = make_message(f"over {security}")
    dovecot.append(mailbox_user[0], delivered)
    connector = imap(
        dovecot,
        mailbox_user,
        security=security,
        port=getattr(dovecot, port_name),
        ca_file=str(dovecot.ca_cert),
    )

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            assert await connector.fetch(ref) == delivered
            await connector.acknowledge(ref)

    asyncio.run(scenario())
    assert dovecot.count(mailbox_user[0]) == 0


@pytest.mark.parametrize(("security", "port_name"), [("starttls", "imap_port"), ("tls", "imaps_port")])
def test_a_certificate_from_an_unknown_ca_is_refused_with_a_clear_error(
    dovecot: Dovecot, mailbox_user: User, security: str, port_name: str
) -> None:
    """Without the test CA as ca_file, the throwaway certificate is refused (verification is never off)."""
    connector = imap(dovecot, mailbox_user, security=security, port=getattr(dovecot, port_name))
    with pytest.raises(ConnectorError, match="TLS certificate is not trusted") as caught:
        asyncio.run(connector.connect())
    assert not isinstance(caught.value, AuthenticationError)
    assert "helpdesk" in str(caught.value)
    assert "ca_file" in str(caught.value)


def test_a_missing_ca_file_is_reported_by_name(dovecot: Dovecot, mailbox_user: User, tmp_path: Path) -> None:
    """A ca_file that cannot be read is named in the error."""
    missing = tmp_path / "nowhere.pem"
    connector = imap(dovecot, mailbox_user, security="tls", port=dovecot.imaps_port, ca_file=str(missing))
    with pytest.raises(ConnectorError, match=r"nowhere\.pem"):
        asyncio.run(connector.connect())


# --- authentication and reachability ---------------------------------------------------------------


def test_a_wrong_password_is_an_authentication_error_naming_account_and_server(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """A refused LOGIN raises AuthenticationError with the account, the user and the server in it."""
    connector = imap(dovecot, (mailbox_user[0], "not-the-password"))
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(connector.connect())
    message = str(caught.value)
    assert "'helpdesk'" in message
    assert f"{dovecot.host}:{dovecot.imap_port}" in message
    assert "AUTHENTICATIONFAILED" in message
    assert "not-the-password" not in message


def test_an_unreachable_server_is_a_connector_error(dovecot: Dovecot, mailbox_user: User) -> None:
    """Nothing listening on the port: ConnectorError (not an authentication problem), naming the server."""
    port = free_port()
    connector = imap(dovecot, mailbox_user, port=port)
    with pytest.raises(ConnectorError, match=r"cannot connect|no connection") as caught:
        asyncio.run(connector.connect())
    assert not isinstance(caught.value, AuthenticationError)
    assert f":{port}" in str(caught.value)


def test_commands_before_connect_are_connector_errors(dovecot: Dovecot, mailbox_user: User) -> None:
    """Using the connector before connect raises ConnectorError, not a library exception."""
    connector = imap(dovecot, mailbox_user)
    with pytest.raises(ConnectorError, match="not connected"):
        asyncio.run(connector.list_waiting())


def test_xoauth2_with_a_token_from_config_and_from_a_command(dovecot: Dovecot, mailbox_user: User) -> None:
    """XOAUTH2 logs in with a bearer token (introspected by Dovecot's oauth2 passdb), given or commanded."""
    name = mailbox_user[0]
    token = secrets.token_urlsafe(24)
    dovecot.grant_token(name, token)
    dovecot.append(name, make_message("over oauth"))
    given = imap(dovecot, (name, None), auth="xoauth2", oauth_token=token)
    commanded = imap(dovecot, (name, None), auth="xoauth2", oauth_token_command=f"printf '%s\\n' {token}")

    async def scenario() -> None:
        for connector in (given, commanded):
            async with session(connector):
                assert len(await connector.list_waiting()) == 1

    asyncio.run(scenario())


def test_a_refused_xoauth2_token_is_an_authentication_error_with_the_servers_reason(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """An invalid token: AuthenticationError carrying the server's SASL error report."""
    connector = imap(dovecot, (mailbox_user[0], None), auth="xoauth2", oauth_token="not-a-valid-token")
    with pytest.raises(AuthenticationError, match=r"XOAUTH2 token refused.*\"status\":\s*\"401\""):
        asyncio.run(connector.connect())


def test_a_failing_token_command_is_an_authentication_error_with_its_message(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """A token command that fails is reported with the last line it wrote to stderr."""
    command = "echo 'invalid_grant: refresh token expired' >&2; exit 3"
    connector = imap(dovecot, (mailbox_user[0], None), auth="xoauth2", oauth_token_command=command)
    with pytest.raises(AuthenticationError, match="refresh token expired"):
        asyncio.run(connector.connect())


def test_the_xoauth2_initial_response_is_the_documented_sasl_string() -> None:
    """user=...^Aauth=Bearer ...^A^A, base64-encoded (Google's and Microsoft's XOAUTH2 format)."""
    encoded = xoauth2_initial_response("someone@example.com", "ya29.token")
    assert base64.b64decode(encoded) == b"user=someone@example.com\x01auth=Bearer ya29.token\x01\x01"


# --- settings ------------------------------------------------------------------------------------------


def test_settings_mistakes_are_reported_for_the_admin() -> None:
    """Missing credentials, token with login, unknown keys and bad choices are clear mistakes."""
    base = {"type": "imap", "host": "mail.example.com", "username": "helpdesk"}
    cases = {
        "auth 'login' needs a password": {},
        "oauth_token is only used with auth: xoauth2": {"password": "x", "oauth_token": "t"},
        "auth 'xoauth2' needs exactly one of": {"auth": "xoauth2"},
        "has no parameter 'pasword' (did you mean 'password'?)": {"pasword": "x"},
        "security must be one of plain, starttls, tls": {"password": "x", "security": "ssl"},
        "processed_folder must name another folder": {"password": "x", "processed_folder": "INBOX"},
    }
    for expected, extra in cases.items():
        settings, mistakes = build_settings("imap", base | extra)
        assert settings is None
        assert any(expected in message for _, message in mistakes), (expected, mistakes)
    settings, mistakes = build_settings("imap", base | {"password": "x"})
    assert mistakes == []
    assert settings is not None
    assert settings.server_port == 993  # type: ignore[attr-defined]
    assert "x" not in repr(settings).replace("example", "")


# --- what acknowledging does -------------------------------------------------------------------------


def test_fetch_leaves_the_message_unseen(dovecot: Dovecot, mailbox_user: User) -> None:
    """BODY.PEEK[]: fetching does not set \\Seen (another mail client still shows it as new)."""
    dovecot.append(mailbox_user[0], make_message("unread"))
    connector = imap(dovecot, mailbox_user)

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            await connector.fetch(ref)

    asyncio.run(scenario())
    with dovecot.imap(mailbox_user[0]) as client:
        client.select("INBOX", readonly=True)
        _, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]


def test_processed_folder_receives_the_message_by_move(dovecot: Dovecot, mailbox_user: User) -> None:
    """With processed_folder, acknowledging moves the message there (created if missing), intact."""
    name = mailbox_user[0]
    first, second = make_message("to move"), make_message("to stay")
    dovecot.append(name, first)
    dovecot.append(name, second)
    connector = imap(dovecot, mailbox_user, processed_folder="Done")

    async def scenario() -> None:
        async with session(connector):
            refs = await connector.list_waiting()
            await connector.acknowledge(refs[0])
            assert [message_id(await connector.fetch(r)) for r in await connector.list_waiting()] == [
                message_id(second)
            ]

    asyncio.run(scenario())
    assert dovecot.count(name) == 1
    assert dovecot.count(name, "Done") == 1
    with dovecot.imap(name) as client:
        client.select("Done", readonly=True)
        _, data = client.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == first


def test_a_processed_folder_with_a_non_ascii_name_is_encoded_in_modified_utf7(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """processed_folder "Gelöscht" is the IMAP folder Gel&APY-scht (RFC 3501 modified UTF-7)."""
    assert imap_utf7("台北/日本語") == "&U,BTFw-/&ZeVnLIqe-"  # the RFC's own example
    assert imap_utf7("A&B") == "A&-B"
    name = mailbox_user[0]
    dovecot.append(name, make_message("umlaut"))
    connector = imap(dovecot, mailbox_user, processed_folder="Gelöscht")

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            await connector.acknowledge(ref)

    asyncio.run(scenario())
    assert dovecot.count(name, "Gel&APY-scht") == 1


def test_after_the_folder_is_recreated_old_refs_are_never_acknowledged(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """A new UIDVALIDITY means old UIDs may name other messages: acknowledging an old ref is refused."""
    name = mailbox_user[0]
    dovecot.append(name, make_message("old"), folder="Work")
    connector = imap(dovecot, mailbox_user, folder="Work")
    newcomer = make_message("arrived after the folder was recreated")

    async def scenario() -> None:
        async with session(connector):
            (old_ref,) = await connector.list_waiting()
        with dovecot.imap(name) as client:
            assert client.delete("Work")[0] == "OK"
        dovecot.append(name, newcomer, folder="Work")  # UID 1 again, under a new UIDVALIDITY
        async with session(connector):
            (new_ref,) = await connector.list_waiting()
            assert new_ref.id != old_ref.id
            assert new_ref.id.split(":")[1] == old_ref.id.split(":")[1]
            with pytest.raises(ConnectorError, match="UIDVALIDITY"):
                await connector.acknowledge(old_ref)
            with pytest.raises(ConnectorError, match="UIDVALIDITY"):
                await connector.fetch(old_ref)
            assert await connector.fetch(new_ref) == newcomer

    asyncio.run(scenario())
    assert dovecot.count(name, "Work") == 1


def test_a_25_mb_message_is_fetched_intact(dovecot: Dovecot, mailbox_user: User) -> None:
    """A 25 MB message comes back byte for byte."""
    delivered = make_large_message(25 * 1024 * 1024)
    dovecot.append(mailbox_user[0], delivered)
    connector = imap(dovecot, mailbox_user)

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            assert await connector.fetch(ref) == delivered

    asyncio.run(scenario())


# --- IDLE --------------------------------------------------------------------------------------------


def test_idle_returns_true_when_another_client_appends(dovecot: Dovecot, mailbox_user: User) -> None:
    """wait_for_new (IDLE) wakes up for a message appended by another client, before its timeout."""
    connector = imap(dovecot, mailbox_user)
    timeout = 30.0
    delivered = make_message("pushed")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with session(connector):
            assert await connector.list_waiting() == []
            waiting = asyncio.ensure_future(connector.wait_for_new(timeout))
            await asyncio.sleep(0.2)  # let IDLE start (mail arriving earlier is reported at its start too)
            started = loop.time()
            await asyncio.to_thread(dovecot.append, mailbox_user[0], delivered)
            woke = await waiting
            elapsed = loop.time() - started
            assert woke is True
            assert elapsed < timeout, "wait_for_new ran into its timeout instead of waking up"
            (ref,) = await connector.list_waiting()
            assert await connector.fetch(ref) == delivered

    asyncio.run(scenario())


def test_idle_returns_false_when_nothing_arrives(dovecot: Dovecot, mailbox_user: User) -> None:
    """With no new mail, wait_for_new returns False after its timeout and the session still works."""
    connector = imap(dovecot, mailbox_user)

    async def scenario() -> None:
        async with session(connector):
            assert await connector.wait_for_new(0.3) is False
            assert await connector.list_waiting() == []

    asyncio.run(scenario())


def test_a_cancelled_wait_leaves_the_session_usable(dovecot: Dovecot, mailbox_user: User) -> None:
    """Cancelling wait_for_new (the service stopping) ends IDLE cleanly: the session still works."""
    connector = imap(dovecot, mailbox_user)
    delivered = make_message("after the cancelled wait")

    async def scenario() -> None:
        async with session(connector):
            waiting = asyncio.ensure_future(connector.wait_for_new(30))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await asyncio.to_thread(dovecot.append, mailbox_user[0], delivered)
            (ref,) = await connector.list_waiting()
            assert await connector.fetch(ref) == delivered
            assert await connector.wait_for_new(0.2) is False

    asyncio.run(scenario())


# --- a server that goes away ---------------------------------------------------------------------------


def test_a_dropped_connection_is_a_connector_error_and_a_new_connect_recovers(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """The server closing the session makes the next command a ConnectorError; connect() starts afresh."""
    dovecot.append(mailbox_user[0], make_message("survives the drop"))
    connector = imap(dovecot, mailbox_user)

    async def scenario() -> None:
        async with session(connector):
            assert len(await connector.list_waiting()) == 1
            await asyncio.to_thread(dovecot.kick, mailbox_user[0])
            with pytest.raises(ConnectorError, match="'helpdesk'"):
                await connector.list_waiting()
            await connector.connect()
            (ref,) = await connector.list_waiting()
            await connector.acknowledge(ref)

    asyncio.run(scenario())
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_connection_dropped_during_idle_ends_the_wait_with_a_connector_error(
    dovecot: Dovecot, mailbox_user: User
) -> None:
    """IDLE on a session the server drops raises ConnectorError instead of waiting out its timeout."""
    connector = imap(dovecot, mailbox_user)
    timeout = 30.0

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with session(connector):
            waiting = asyncio.ensure_future(connector.wait_for_new(timeout))
            await asyncio.sleep(0.2)
            started = loop.time()
            await asyncio.to_thread(dovecot.kick, mailbox_user[0])
            with pytest.raises(ConnectorError, match="connection lost during IDLE"):
                await waiting
            assert loop.time() - started < timeout, "the wait ran into its timeout instead of failing"

    asyncio.run(scenario())


def test_a_folder_that_does_not_exist_is_named_in_the_error(dovecot: Dovecot, mailbox_user: User) -> None:
    """Reading a missing folder fails at connect with the folder's name and the server's reason."""
    connector = imap(dovecot, mailbox_user, folder="No Such Folder")
    with pytest.raises(ConnectorError, match="folder 'No Such Folder' cannot be opened"):
        asyncio.run(connector.connect())


# --- an older server: no UIDPLUS, no MOVE -------------------------------------------------------------


@pytest.fixture(scope="module")
def old_dovecot() -> Iterator[Dovecot]:
    """A Dovecot that advertises neither UIDPLUS nor MOVE nor SASL-IR (as some older servers do)."""
    if shutil.which("dovecot") is None and os.environ.get("CI") != "true":
        pytest.skip("dovecot is not installed")
    base = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-old-"))
    try:
        server = start_dovecot(base, "imap_capability = IMAP4rev1 LITERAL+ IDLE")
    except DovecotError as exc:
        shutil.rmtree(base, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"Dovecot could not be started: {exc}")
        pytest.skip(f"Dovecot could not be started: {exc}")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def old_user(old_dovecot: Dovecot) -> User:
    """A fresh user on the older server."""
    user = (f"u{secrets.token_hex(6)}", secrets.token_urlsafe(12))
    old_dovecot.add_user(*user)
    return user


def test_without_uidplus_acknowledging_expunges_when_only_ours_are_deleted(
    old_dovecot: Dovecot, old_user: User
) -> None:
    """No UIDPLUS: the message is flagged and a plain EXPUNGE removes it (nothing else was \\Deleted)."""
    for n in range(2):
        old_dovecot.append(old_user[0], make_message(f"old server {n}"))
    connector = imap(old_dovecot, old_user)

    async def scenario() -> None:
        async with session(connector):
            refs = await connector.list_waiting()
            await connector.acknowledge(refs[0])
            assert [r.id for r in await connector.list_waiting()] == [refs[1].id]

    asyncio.run(scenario())
    assert old_dovecot.count(old_user[0]) == 1


def test_without_uidplus_a_message_someone_else_deleted_is_not_expunged_by_us(
    old_dovecot: Dovecot, old_user: User
) -> None:
    """No UIDPLUS and another \\Deleted message in the folder: ours stays flagged, theirs is not expunged."""
    name = old_user[0]
    for n in range(2):
        old_dovecot.append(name, make_message(f"shared folder {n}"))
    with old_dovecot.imap(name) as client:  # a user's mail client marks message 1 deleted, no expunge
        client.select("INBOX")
        client.store("1", "+FLAGS", "(\\Deleted)")
    connector = imap(old_dovecot, old_user)

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()  # message 1 is \Deleted: not waiting
            await connector.acknowledge(ref)
            assert await connector.list_waiting() == []

    asyncio.run(scenario())
    assert old_dovecot.count(name) == 2


def test_without_move_the_processed_folder_gets_a_copy_and_the_original_goes(
    old_dovecot: Dovecot, old_user: User
) -> None:
    """No MOVE: UID COPY to the processed folder, then the original is deleted."""
    name = old_user[0]
    old_dovecot.append(name, make_message("copy me"))
    connector = imap(old_dovecot, old_user, processed_folder="Archive")

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            await connector.acknowledge(ref)

    asyncio.run(scenario())
    assert old_dovecot.count(name) == 0
    assert old_dovecot.count(name, "Archive") == 1


def test_xoauth2_without_sasl_ir_sends_the_token_after_the_continuation(
    old_dovecot: Dovecot, old_user: User
) -> None:
    """No SASL-IR: AUTHENTICATE XOAUTH2 first, the token on its own line; a bad token still fails clearly."""
    name = old_user[0]
    token = secrets.token_urlsafe(24)
    old_dovecot.grant_token(name, token)
    old_dovecot.append(name, make_message("oauth on an old server"))
    good = imap(old_dovecot, (name, None), auth="xoauth2", oauth_token=token)
    bad = imap(old_dovecot, (name, None), auth="xoauth2", oauth_token="revoked")

    async def scenario() -> None:
        async with session(good):
            assert len(await good.list_waiting()) == 1
        with pytest.raises(AuthenticationError, match="XOAUTH2 token refused"):
            await bad.connect()

    asyncio.run(scenario())

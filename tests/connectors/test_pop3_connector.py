"""The POP3 connector against a real Dovecot: conformance, TLS, authentication, QUIT semantics."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import Dovecot, free_port

from connectors.base import AuthenticationError, Connector, ConnectorError, MessageRef
from connectors.registry import build_settings, make_connector
from connectors.testing import ConnectorConformance, make_large_message, make_message, message_id


def pop3(dovecot: Dovecot, user: tuple[str, str | None], **settings: Any) -> Connector:
    """A POP3 connector for ``user`` on the plain port, with ``settings`` overriding the defaults."""
    name, password = user
    raw = {"type": "pop3", "host": dovecot.host, "port": dovecot.pop3_port, "security": "plain"}
    raw |= {"username": name, "password": password, **settings}
    return make_connector("helpdesk", raw, Path("."))


@contextlib.asynccontextmanager
async def session(connector: Connector) -> AsyncIterator[Connector]:
    """The connector connected, then closed."""
    await connector.connect()
    try:
        yield connector
    finally:
        await connector.close()


class TestPop3Connector(ConnectorConformance):
    """The conformance suite over POP3 on Dovecot (a session is a snapshot of the maildrop)."""

    sees_new_mail_in_session = False

    @pytest.fixture(autouse=True)
    def _fresh_mailbox(self, dovecot: Dovecot, mailbox_user: tuple[str, str]) -> None:
        self.dovecot, self.user = dovecot, mailbox_user

    def make_connector(self) -> Connector:
        """A connector for this test's user over POP3S, trusting the harness CA."""
        return pop3(
            self.dovecot, self.user, security="tls", port=self.dovecot.pop3s_port,
            ca_file=str(self.dovecot.ca_cert),
        )  # fmt: skip

    def deliver(self, raw: bytes) -> None:
        """Append to the user's INBOX (POP3 reads the same maildir)."""
        self.dovecot.append(self.user[0], raw)

    def remaining(self) -> int:
        """Messages left in the user's INBOX, counted over IMAP."""
        return self.dovecot.count(self.user[0])


@pytest.mark.parametrize(
    ("security", "port_name"), [("plain", "pop3_port"), ("stls", "pop3_port"), ("tls", "pop3s_port")]
)
def test_each_security_mode_reads_and_deletes_with_the_harness_ca_trusted(
    dovecot: Dovecot, mailbox_user: tuple[str, str], security: str, port_name: str
) -> None:
    """Plain, STLS and POP3S sessions list, fetch and delete (TLS verified against the test CA)."""
    delivered = make_message(f"over {security}")
    dovecot.append(mailbox_user[0], delivered)
    connector = pop3(
        dovecot, mailbox_user, security=security, port=getattr(dovecot, port_name),
        ca_file=str(dovecot.ca_cert),
    )  # fmt: skip

    async def scenario() -> None:
        async with session(connector):
            (ref,) = await connector.list_waiting()
            assert ref.size == len(delivered)
            assert await connector.fetch(ref) == delivered
            await connector.acknowledge(ref)

    asyncio.run(scenario())
    assert dovecot.count(mailbox_user[0]) == 0


@pytest.mark.parametrize(("security", "port_name"), [("stls", "pop3_port"), ("tls", "pop3s_port")])
def test_a_certificate_from_an_untrusted_ca_is_refused(
    dovecot: Dovecot, mailbox_user: tuple[str, str], security: str, port_name: str
) -> None:
    """Without the test CA as ca_file, the server's certificate is not trusted: no session."""
    connector = pop3(dovecot, mailbox_user, security=security, port=getattr(dovecot, port_name))

    with pytest.raises(ConnectorError, match="certificate not trusted") as refused:
        asyncio.run(connector.connect())
    assert not isinstance(refused.value, AuthenticationError)


def test_a_wrong_password_is_an_authentication_error_naming_account_and_server(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """-ERR on PASS becomes AuthenticationError with the account, the user and the server."""
    connector = pop3(dovecot, (mailbox_user[0], "not-the-password"))

    with pytest.raises(AuthenticationError) as refused:
        asyncio.run(connector.connect())
    message = str(refused.value)
    assert "'helpdesk'" in message
    assert f"{mailbox_user[0]}@{dovecot.host}:{dovecot.pop3_port}" in message


def test_an_unreachable_server_is_a_connector_error() -> None:
    """Nothing listening on the port: ConnectorError (retried), not an authentication failure."""
    port = free_port()
    connector = make_connector(
        "helpdesk",
        {
            "type": "pop3",
            "host": "127.0.0.1",
            "port": port,
            "security": "plain",
            "username": "u",
            "password": "p",
        },
        Path("."),
    )

    with pytest.raises(ConnectorError, match=r"cannot connect: .*refused") as failed:
        asyncio.run(connector.connect())
    assert not isinstance(failed.value, AuthenticationError)
    assert f"127.0.0.1:{port}" in str(failed.value)


class CuttableProxy:
    """A loopback TCP relay to a server whose connections a test can cut (no QUIT reaches the server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_out, server_out]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(client_in, server_out), pipe(server_in, client_out))

    def cut(self) -> None:
        """Drop every relayed connection at once, on both sides."""
        for writer in self.writers:
            writer.transport.abort()

    def stop(self) -> None:
        """Stop listening."""
        self.server.close()


def test_deletions_take_effect_only_at_quit(dovecot: Dovecot, mailbox_user: tuple[str, str]) -> None:
    """An acknowledged message comes back when the connection drops before QUIT; QUIT removes it."""
    delivered = make_message("dropped before quit")
    dovecot.append(mailbox_user[0], delivered)

    async def scenario() -> None:
        proxy = CuttableProxy(dovecot.pop3_port)
        await proxy.start()
        dropped = pop3(dovecot, mailbox_user, port=proxy.port)
        await dropped.connect()
        (ref,) = await dropped.list_waiting()
        await dropped.acknowledge(ref)
        proxy.cut()
        await dropped.close()  # QUIT cannot reach the server; close still returns quietly
        proxy.stop()
        assert dovecot.count(mailbox_user[0]) == 1

        async with session(pop3(dovecot, mailbox_user)) as again:
            assert await again.list_waiting() == [ref]  # same UIDL: the ledger will see a duplicate
            assert message_id(await again.fetch(ref)) == message_id(delivered)
            await again.acknowledge(ref)
            assert dovecot.count(mailbox_user[0]) == 1  # marked only, until QUIT
        assert dovecot.count(mailbox_user[0]) == 0

    asyncio.run(scenario())


def test_max_messages_per_session_quits_and_reconnects_while_a_pass_goes_on(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """With max 2 per session, 5 acknowledgements in one pass work; every 2 are deleted at once."""
    messages = [make_message(f"batch {n}") for n in range(5)]
    for raw in messages:
        dovecot.append(mailbox_user[0], raw)
    left_after_each_ack: list[int] = []

    async def scenario() -> None:
        async with session(pop3(dovecot, mailbox_user, max_messages_per_session=2)) as connector:
            refs = await connector.list_waiting()
            for ref, raw in zip(refs, messages, strict=True):
                assert message_id(await connector.fetch(ref)) == message_id(raw)
                await connector.acknowledge(ref)
                left_after_each_ack.append(dovecot.count(mailbox_user[0]))

    asyncio.run(scenario())
    assert left_after_each_ack == [5, 3, 3, 1, 1]
    assert dovecot.count(mailbox_user[0]) == 0


def test_a_25_mb_message_and_dot_stuffed_long_lines_come_back_byte_for_byte(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """RETR undoes dot-stuffing, accepts lines longer than poplib's 2048, and carries 25 MB intact."""
    odd = make_message("odd lines", ".starts with a dot\r\n..two dots\r\n.\r\n" + "x" * 5000 + "\r\nend\r\n")
    big = make_large_message(25 * 1024 * 1024)
    dovecot.append(mailbox_user[0], odd)
    dovecot.append(mailbox_user[0], big)

    async def scenario() -> None:
        async with session(pop3(dovecot, mailbox_user)) as connector:
            first, second = await connector.list_waiting()
            assert await connector.fetch(first) == odd
            assert await connector.fetch(second) == big

    asyncio.run(scenario())


def test_xoauth2_logs_in_with_a_token_or_a_token_command(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """AUTH XOAUTH2 with a granted bearer token works, from the config or from a command's output."""
    token = secrets.token_urlsafe(24)
    dovecot.grant_token(mailbox_user[0], token)
    dovecot.append(mailbox_user[0], make_message("oauth"))
    from_config = pop3(dovecot, (mailbox_user[0], None), auth="xoauth2", oauth_token=token)
    from_command = pop3(dovecot, (mailbox_user[0], None), auth="xoauth2", oauth_token_command=f"echo {token}")

    async def scenario() -> None:
        for connector in (from_config, from_command):
            async with session(connector):
                assert len(await connector.list_waiting()) == 1

    asyncio.run(scenario())


def test_a_refused_token_or_failing_token_command_is_an_authentication_error(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """A token the server does not accept, or a command that fails, is reported as an auth failure."""
    revoked = pop3(dovecot, (mailbox_user[0], None), auth="xoauth2", oauth_token="never-granted")
    broken = pop3(
        dovecot,
        (mailbox_user[0], None),
        auth="xoauth2",
        oauth_token_command="echo consent revoked >&2; exit 3",
    )

    with pytest.raises(AuthenticationError, match="login refused"):
        asyncio.run(revoked.connect())
    with pytest.raises(AuthenticationError, match="oauth_token_command failed: consent revoked"):
        asyncio.run(broken.connect())


def test_a_message_deleted_by_someone_else_is_acknowledged_as_a_no_op(
    dovecot: Dovecot, mailbox_user: tuple[str, str]
) -> None:
    """A ref whose UIDL is gone from the server is skipped by acknowledge, and fetch says it is gone."""
    dovecot.append(mailbox_user[0], make_message("stays"))
    gone = MessageRef("no-such-uidl")

    async def scenario() -> None:
        async with session(pop3(dovecot, mailbox_user)) as connector:
            await connector.acknowledge(gone)
            with pytest.raises(ConnectorError, match="no longer in the mailbox"):
                await connector.fetch(gone)

    asyncio.run(scenario())
    assert dovecot.count(mailbox_user[0]) == 1


@pytest.mark.parametrize(
    ("params", "mistake"),
    [
        ({"username": "u"}, "auth 'user' needs a password"),
        ({"username": "u", "auth": "xoauth2"}, "needs exactly one of oauth_token and oauth_token_command"),
        ({"username": "u", "password": "p", "security": "ssl"}, "security must be one of plain, stls, tls"),
        ({"username": "u", "password": "p", "max_messages_per_session": 0}, "must be at least 1"),
        ({"username": "u", "password": "p", "oauth_token": "t"}, "only used with auth: xoauth2"),
    ],
)
def test_settings_mistakes_are_reported_for_the_admin(params: dict[str, Any], mistake: str) -> None:
    """The connector: mapping is checked before any connection, with a message naming the mistake."""
    settings, mistakes = build_settings("pop3", {"type": "pop3", "host": "mail.example.com", **params})

    assert settings is None
    assert any(mistake in message for _, message in mistakes), mistakes

"""The SMTP transport (aiosmtplib): plain, STARTTLS or implicit TLS, always with certificate checks.

Authentication is AUTH LOGIN, AUTH PLAIN (or whichever of the two the server offers) with a
username and password, or XOAUTH2 with a token given in the config or printed by a command.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from connectors.base import Envelope, SendError, Transport, TransportSettings, check_server_address
from connectors.port_mismatch import foreign_greeting, not_tls, silent_greeting

if TYPE_CHECKING:
    import aiosmtplib

_DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, kw_only=True)
class SmtpSettings(TransportSettings):
    """The keys of an ``outgoing.servers`` entry of ``type: smtp`` (the default type)."""

    host: str
    port: int | None = None  # 25 (plain), 587 (starttls) or 465 (tls)
    security: Literal["plain", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    auth: Literal["login", "plain", "xoauth2"] | None = None  # None: what the server offers
    oauth_token: str | None = None
    oauth_token_command: str | None = None  # a shell command printing a fresh XOAUTH2 token
    ca_file: str | None = None  # an extra trusted CA (PEM); relative to the config's folder
    timeout: float = 30.0
    helo_name: str | None = None

    def __post_init__(self) -> None:
        check_server_address(self.host, self.port, self.timeout)
        tokens = [k for k in ("oauth_token", "oauth_token_command") if getattr(self, k) is not None]
        if len(tokens) > 1:
            raise ValueError("give oauth_token or oauth_token_command, not both")
        if self.mechanism == "xoauth2":
            if not tokens:
                raise ValueError("auth xoauth2 needs oauth_token or oauth_token_command")
            if self.password is not None:
                raise ValueError("auth xoauth2 uses a token, not a password")
        elif tokens:
            raise ValueError(f"{tokens[0]} is only used with auth: xoauth2")
        elif self.mechanism is not None and self.password is None:
            raise ValueError(f"auth {self.mechanism} needs a password")
        if (self.password is not None or tokens) and not self.username:
            raise ValueError("a password or token needs a username")
        if self.mechanism is not None and self.security == "plain" and self.host not in _LOOPBACK_HOSTS:
            raise ValueError(
                "logging in over a plain connection would send the credentials in clear; "
                "use security: starttls or tls"
            )

    @property
    def effective_port(self) -> int:
        """The port to connect to: the configured one or the security's usual port."""
        return self.port if self.port is not None else _DEFAULT_PORTS[self.security]

    @property
    def mechanism(self) -> str | None:
        """How to log in: login, plain, xoauth2, ``any`` (what the server offers), or None (no login)."""
        if self.auth is not None:
            return self.auth
        if self.oauth_token is not None or self.oauth_token_command is not None:
            return "xoauth2"
        if self.username and self.password is not None:
            return "any"
        return None


class SmtpTransport(Transport):
    """Sends over one SMTP connection, opened on the first message and reused for the next ones."""

    name = "smtp"
    Settings = SmtpSettings

    _client: aiosmtplib.SMTP | None = None

    @property
    def smtp(self) -> SmtpSettings:
        """The settings, typed."""
        assert isinstance(self.settings, SmtpSettings)
        return self.settings

    async def send(self, envelope: Envelope) -> str:
        """Send one message (MAIL FROM, RCPT TO, DATA); the server's 250 reply or SendError."""
        import aiosmtplib

        client = await self._connected()
        try:
            _, reply = await client.sendmail(envelope.sender, [envelope.recipient], envelope.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise SendError(_said(refused.code, refused.message), code=refused.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            if not client.is_connected:
                await self.close()
            raise SendError(_said(exc.code, exc.message), code=exc.code) from None
        except ValueError as exc:  # an address that cannot be written in an SMTP command
            raise SendError(f"address cannot be sent: {exc}", permanent=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            raise SendError(f"connection to {self._where()} lost: {_describe(exc)}") from None
        return f"250 {reply}".strip()

    async def close(self) -> None:
        """Say QUIT (or just drop the connection); never raises."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit()
        except Exception:
            client.close()

    # --- connecting ------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.smtp.host}:{self.smtp.effective_port}"

    async def _connected(self) -> aiosmtplib.SMTP:
        import aiosmtplib

        if self._client is not None and self._client.is_connected:
            return self._client
        settings = self.smtp
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.effective_port,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            tls_context=self._tls_context() if settings.security != "plain" else None,
            validate_certs=True,
            timeout=settings.timeout,
            local_hostname=settings.helo_name,
        )
        try:
            await client.connect()
            await self._login(client)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise SendError(
                f"{self._where()} refused the login of {settings.username}: {_said(exc.code, exc.message)}",
                connection=True,
            ) from None
        except SendError:
            client.close()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            detail = _mismatch(exc, settings.security, settings.timeout) or _describe(exc)
            raise SendError(f"cannot connect to {self._where()}: {detail}", connection=True) from None
        self._client = client
        return client

    def _tls_context(self) -> ssl.SSLContext:
        """The system's trust store, plus ``ca_file`` if given; verification is never turned off."""
        context = ssl.create_default_context()
        if self.smtp.ca_file:
            path = self.base_dir / self.smtp.ca_file
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise SendError(f"ca_file {path} cannot be read: {exc}", connection=True) from None
        return context

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        settings = self.smtp
        mechanism = settings.mechanism
        username = settings.username or ""
        if mechanism is None:
            return
        if client.is_ehlo_or_helo_needed:  # after STARTTLS the greeting must be repeated
            await client.ehlo()
        if mechanism == "xoauth2":
            await client.auth_xoauth2(username, await self._token())
        elif mechanism == "login":
            await client.auth_login(username, settings.password or "")
        elif mechanism == "plain":
            await client.auth_plain(username, settings.password or "")
        else:
            await client.login(username, settings.password or "")

    async def _token(self) -> str:
        settings = self.smtp
        if settings.oauth_token is not None:
            return settings.oauth_token
        command = settings.oauth_token_command or ""
        process = await asyncio.create_subprocess_shell(
            command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.base_dir,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=settings.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SendError(
                f"oauth_token_command did not finish within {settings.timeout:g} s", connection=True
            ) from None
        token = out.decode("utf-8", "replace").strip()
        if process.returncode != 0 or not token:
            detail = err.decode("utf-8", "replace").strip()[:300] or "no token printed"
            raise SendError(
                f"oauth_token_command failed (exit status {process.returncode}): {detail}", connection=True
            )
        return token


def _said(code: int, message: str) -> str:
    """A server reply as one line: ``550 5.1.1 No such user``."""
    return " ".join(f"{code} {message}".split())


def _mismatch(exc: BaseException, security: str, timeout: float) -> str | None:
    """What a wrong port or security mode made of the connection, if that is what ``exc`` shows."""
    import aiosmtplib

    advice = not_tls(exc, "`security: starttls` or `plain`")
    if advice is not None:
        return advice
    # aiosmtplib reports a first line that is not an SMTP reply as code -1 with the line quoted
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == -1:
        _, _, line = exc.message.partition(": ")
        return foreign_greeting("SMTP", line.encode("utf-8", "replace")) if line else None
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError) and security != "tls":
        return silent_greeting("SMTP", timeout, "tls")
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        text = f"TLS certificate not trusted ({cause.verify_message}); add its CA with ca_file"
    return " ".join(text.split())

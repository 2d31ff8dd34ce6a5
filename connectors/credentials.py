"""Where an IMAP or POP3 account's credentials come from: a password, a bearer token, or a token command."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from pathlib import Path
from typing import Any

from connectors.base import AuthenticationError


async def token_from_command(command: str, where: str, cwd: Path, timeout: float) -> str:
    """Run ``command`` with the shell (in ``cwd``) and return its standard output, stripped, as a token.

    A command that fails, times out or prints nothing raises ``AuthenticationError`` with the last
    line it wrote to standard error: an expired refresh token must be reported, not retried quietly.
    """
    try:
        process = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd if cwd.is_dir() else None,
        )
    except OSError as exc:
        raise AuthenticationError(f"{where}: oauth_token_command cannot be started: {exc}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise AuthenticationError(
            f"{where}: oauth_token_command gave no token within {timeout:g} s"
        ) from None
    token = out.decode("utf-8", "replace").strip()
    if process.returncode != 0 or not token:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {process.returncode}, no token"
        raise AuthenticationError(f"{where}: oauth_token_command failed: {why}")
    if any(c.isspace() for c in token):
        raise AuthenticationError(
            f"{where}: oauth_token_command printed more than a token (it contains spaces)"
        )
    return token


def check_credentials(settings: Any, password_auth: str) -> None:
    """Refuse (ValueError) settings whose ``auth`` lacks its secret or mixes password and token keys.

    ``password_auth`` is the protocol's name for password login (``login`` for IMAP, ``user`` for
    POP3); the other choice, ``xoauth2``, takes exactly one of ``oauth_token`` and
    ``oauth_token_command``.
    """
    tokens = [k for k in ("oauth_token", "oauth_token_command") if getattr(settings, k) is not None]
    if settings.auth == password_auth:
        if settings.password is None:
            raise ValueError(f"auth '{password_auth}' needs a password")
        if tokens:
            raise ValueError(f"{tokens[0]} is only used with auth: xoauth2")
    elif len(tokens) != 1:
        raise ValueError("auth 'xoauth2' needs exactly one of oauth_token and oauth_token_command")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine by name or address: ``localhost``, 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_plain_login(settings: Any, encrypted: str) -> None:
    """Refuse (ValueError) a login over an unencrypted connection to another machine.

    ``security: plain`` sends the password (or token) as it is; that is allowed to a loopback
    host, or where the account says ``allow_plain_login: true`` (a network the admin trusts).
    ``encrypted`` names the protocol's encrypted choices for the message (``tls or starttls``).
    """
    if settings.security != "plain" or settings.allow_plain_login or is_loopback(settings.host):
        return
    secret = "token" if settings.auth == "xoauth2" else "password"
    raise ValueError(
        f"logging in to {settings.host} over a plain connection would send the {secret} unencrypted; "
        f"use security: {encrypted}, or set allow_plain_login: true if the network to the server is trusted"
    )

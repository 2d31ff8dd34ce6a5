"""Where an IMAP account's credentials come from: a password, a bearer token, or a token command."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

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

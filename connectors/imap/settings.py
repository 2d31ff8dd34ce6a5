"""An IMAP account's ``connector:`` settings, validated when the config is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from connectors.base import ConnectorSettings, check_server_address
from connectors.credentials import check_credentials, check_plain_login

DEFAULT_PORTS = {"plain": 143, "starttls": 143, "tls": 993}


@dataclass(frozen=True)
class ImapSettings(ConnectorSettings):
    """``connector: {type: imap, host: ..., username: ..., password: ...}``.

    ``port`` defaults to 993 for ``security: tls`` and 143 for ``starttls`` and ``plain``.
    ``auth: xoauth2`` takes a bearer token from ``oauth_token`` or from the standard output of
    ``oauth_token_command`` (run by the shell at every connection, so it can refresh the token).
    ``ca_file`` adds a trust root (relative paths are from the config's folder); certificates are
    always verified. ``processed_folder``: move acknowledged messages there instead of deleting
    them (created if missing). ``timeout``: seconds without an answer before a command fails.
    ``idle: false`` turns IMAP IDLE push off (the service then polls at the account's interval).
    ``security: plain`` logs in only to a loopback host, unless ``allow_plain_login: true`` (the
    password would cross the network unencrypted).
    """

    host: str
    username: str
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    security: Literal["plain", "starttls", "tls"] = "tls"
    auth: Literal["login", "xoauth2"] = "login"
    oauth_token: str | None = field(default=None, repr=False)
    oauth_token_command: str | None = None
    ca_file: str | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None
    timeout: float = 30
    idle: bool = True
    allow_plain_login: bool = False

    def __post_init__(self) -> None:
        check_server_address(self.host, self.port, self.timeout)
        if not self.folder.strip():
            raise ValueError("folder must not be empty")
        if self.processed_folder is not None and self.processed_folder in ("", self.folder):
            raise ValueError("processed_folder must name another folder than the one read")
        check_credentials(self, "login")
        check_plain_login(self, "tls or starttls")

    @property
    def server_port(self) -> int:
        """The port to connect to: the configured one, or the default for the security mode."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]

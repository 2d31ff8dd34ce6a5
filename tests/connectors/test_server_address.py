"""IMAP, POP3 and SMTP settings refuse the same bad server addresses, with the same words."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.imap.settings import ImapSettings
from connectors.pop3 import Pop3Settings
from connectors.smtp import SmtpSettings

# each settings class with what else it needs
SETTINGS: list[tuple[Any, dict[str, Any]]] = [
    (ImapSettings, {"type": "imap"}),
    (Pop3Settings, {"type": "pop3"}),
    (SmtpSettings, {"type": "smtp", "name": "outgoing"}),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["imap", "pop3", "smtp"])
@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"host": "  "}, "host must not be empty"),
        ({"port": 0}, "port must be between 1 and 65535, not 0"),
        ({"port": 65536}, "port must be between 1 and 65535, not 65536"),
        ({"timeout": 0}, "timeout must be positive, not 0"),
        ({"timeout": -1.5}, "timeout must be positive, not -1.5"),
    ],
)
def test_imap_pop3_and_smtp_refuse_an_empty_host_a_bad_port_and_a_timeout_not_positive(
    settings: tuple[Any, dict[str, Any]], changed: dict[str, Any], message: str
) -> None:
    made, extra = settings
    values: dict[str, Any] = {"host": "mail.example.com", "username": "desk", "password": "secret", **extra}
    with pytest.raises(ValueError, match=f"^{message}$"):
        made(**{**values, **changed})


@pytest.mark.parametrize("settings", SETTINGS, ids=["imap", "pop3", "smtp"])
def test_imap_pop3_and_smtp_take_a_good_server_address(settings: tuple[Any, dict[str, Any]]) -> None:
    kind, extra = settings
    made = kind(host="mail.example.com", username="desk", password="secret", port=993, timeout=5, **extra)
    assert (made.host, made.port, made.timeout) == ("mail.example.com", 993, 5)

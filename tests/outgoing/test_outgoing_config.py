"""The ``outgoing:`` section of mailgate.yaml: its values, and each mistake refused at its line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.registry import build_transport_settings
from connectors.smtp import SmtpSettings
from engine.config.model import load_config
from engine.errors import ConfigError

GOOD = """\
database: sqlite:///mailgate.sqlite
accounts:
  - {name: helpdesk, address: helpdesk@example.com, connector: memory}
  - {name: finance, address: finance@example.com, connector: memory, outgoing: relay,
     from_address: noreply-finance@example.com}
outgoing:
  max_attempts: 5
  retry_delay_seconds: 30
  max_retry_delay_seconds: 900
  sending_timeout_seconds: 120
  replies_per_sender_per_hour: 3
  permanent_codes: [550, 553]
  servers:
    - name: main
      host: smtp.example.com
      username: helpdesk
      password: ${SMTP_PASSWORD}
    - {name: relay, host: 10.0.0.5, port: 25, security: plain, from_address: desk@example.com}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailgate.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [f"{p.line}:{p.col} {p.message}" for p in caught.value.problems]


def test_an_outgoing_section_is_read_with_its_servers_and_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "from-the-environment")
    config = load_config(write(tmp_path, GOOD))

    policy = config.outgoing
    assert (policy.max_attempts, policy.retry_delay_seconds, policy.max_retry_delay_seconds) == (5, 30, 900)
    assert (policy.sending_timeout_seconds, policy.replies_per_sender_per_hour) == (120, 3)
    assert policy.permanent_codes == (550, 553)
    main, relay = policy.servers
    assert (main.name, main.type, main.settings["password"]) == ("main", "smtp", "from-the-environment")
    assert policy.server(None) is main and policy.server("relay") is relay
    assert config.account("finance").outgoing == "relay"
    assert config.account("finance").from_address == "noreply-finance@example.com"
    assert config.own_addresses() >= {
        "helpdesk@example.com",
        "noreply-finance@example.com",
        "desk@example.com",
    }
    assert config.own_addresses() is config.own_addresses()  # made once, not for every message
    settings, mistakes = build_transport_settings(main.type, main.settings)
    assert mistakes == [] and isinstance(settings, SmtpSettings)
    assert (settings.security, settings.effective_port, settings.mechanism) == ("starttls", 587, "any")


def test_without_an_outgoing_section_the_defaults_apply(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "accounts: [{name: helpdesk, connector: memory}]\n"))

    assert config.outgoing.servers == ()
    assert config.outgoing.permanent_codes == (501, 503, 550, 553)
    assert config.outgoing.replies_per_sender_per_hour == 10


def test_outgoing_mistakes_are_reported_where_they_are_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        accounts:
          - {name: helpdesk, address: helpdesk@example.com, connector: memory, outgoing: mian}
          - {name: nobody, connector: memory}
        outgoing:
          max_attempts: 0
          permanent_codes: [550, "553"]
          servers:
            - name: main
              hots: smtp.example.com
            - name: open
              host: smtp.example.com
              security: plain
              username: desk
              password: secret
            - {name: token, host: smtp.example.com, auth: xoauth2, username: desk}
            - {name: tls, host: smtp.example.com, security: ssl}
            - {name: bird, type: carrier-pigeon, host: x}
        """,
    )

    found = problems_of(path)
    assert found[7].startswith("17:26 unknown outgoing server type 'carrier-pigeon'; known: ")
    del found[7]
    assert found == [
        "5:17 max_attempts must be at least 1",
        "6:20 permanent_codes must be a list of SMTP codes (400 to 599)",
        "9:7 outgoing server 'main' has no parameter 'hots' (did you mean 'host'?)",
        "8:7 outgoing server 'main' needs the parameter 'host'",
        "10:7 outgoing server 'open': logging in over a plain connection would send the credentials in "
        "clear; use security: starttls or tls",
        "15:7 outgoing server 'token': auth xoauth2 needs oauth_token or oauth_token_command",
        "16:53 outgoing server 'tls': security must be one of plain, starttls, tls, not 'ssl'",
        "2:82 no outgoing server named 'mian' (did you mean 'main'?); "
        "outgoing servers: main, open, token, tls",
        "3:5 account 'nobody' has no address to send from: set from_address (or address) here, or "
        "from_address on outgoing server 'main'",
    ]

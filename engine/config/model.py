"""The mailgate.yaml config: its shape (a contract), its defaults, and its validation.

Every mistake is reported as ``file:line:col: message``, all of them at once, and a config
with any mistake is refused whole.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from connectors.registry import UnknownConnector, build_settings, connector_class, connector_names
from engine.config.authentication import AuthenticationSettings, read_authentication
from engine.config.database import DEFAULT_TIMEOUTS, DatabaseTimeouts, read_database_timeouts
from engine.config.outgoing import OutgoingConfig
from engine.config.outgoing_reader import read_outgoing
from engine.config.reader import (
    ENV_REF,
    check_keys,
    expand_env,
    get_section,
    get_value,
    is_unset,
    typed_env_text,
    unset_secrets,
)
from engine.config.service import ServiceConfig, read_service
from engine.config.yaml_source import (
    NOT_FROM_A_FILE,
    Problems,
    Spans,
    is_mapping,
    is_sequence,
    load_yaml_file,
    spans_of,
)
from engine.errors import ConfigError, MailgateError, Problem, Span, did_you_mean

CONFIG_FILENAME = "mailgate.yaml"
CONFIG_ENV = "MAILGATE_CONFIG"
REOPEN_ASSIGN_CHOICES = ("last_analyst", "template_group")


@dataclass(frozen=True)
class Flags:
    """An account's switches; omitted flags are off except auto_reply and truncate_incoming_emails."""

    close_calls_anonymously: bool = False
    update_calls_anonymously: bool = False
    log_new_call_on_invalid_number: bool = False
    update_closed_calls: bool = False
    reopen_closed_calls: bool = False
    truncate_incoming_emails: bool = True
    auto_reply: bool = True
    use_linked_analyst: bool = False
    commands_require_authentication: bool = False  # refuse commands from unauthenticated senders


@dataclass(frozen=True)
class CallTemplate:
    """What a call logged from email starts with."""

    partition: str | None = None
    screen_set: str | None = None
    ipk_status: str | None = None
    ipk_stream: str | None = None
    assigned_analyst: str | None = None
    assigned_group: str | None = None


@dataclass(frozen=True)
class AccountConfig:
    """One watched mailbox: where it is, which rule pack decides, and its flags."""

    name: str
    connector: Mapping[str, Any]
    rule_pack: str
    flags: Flags = field(default_factory=Flags)
    call_template: CallTemplate = field(default_factory=CallTemplate)
    default_logging_analyst: str | None = None
    reopen_assign_to: str = "last_analyst"
    address: str | None = None
    active: bool = True
    poll_interval_seconds: float = 60.0
    outgoing: str | None = None  # the outgoing server's name (None: the first one)
    from_address: str | None = None  # the From of outgoing mail (None: address, then the server's)
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)

    @property
    def connector_type(self) -> str:
        """The connector's registered name (``folder``, ``imap``, ...)."""
        return str(self.connector.get("type", "folder"))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration.

    ``spans`` say where every key of the file was written (``account_spans`` an account's), so a
    check made after loading reports ``file:line:col`` without reading the file again.
    """

    path: Path
    database: str
    product_name: str = "mailgate"
    email_at_update_via_email_in: bool = False
    mail_domain: str = "mailgate.invalid"
    time_limit_seconds: float = 30.0
    keep_originals_days: int = 90  # 0: keep no originals
    keep_sent_days: int = 90  # sent outgoing messages are deleted after this; 0: never
    accounts: tuple[AccountConfig, ...] = ()
    outgoing: OutgoingConfig = field(default_factory=OutgoingConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    database_timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS
    spans: Spans = field(default=NOT_FROM_A_FILE, compare=False, repr=False)  # where each key was written

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are resolved against."""
        return self.path.parent

    def account(self, name: str) -> AccountConfig:
        """The account called ``name``; an error naming the closest one if there is none."""
        for acc in self.accounts:
            if acc.name == name:
                return acc
        known = [a.name for a in self.accounts]
        listed = ", ".join(known) or "none"
        raise MailgateError(
            f"no account named {name!r}{did_you_mean(name, known)} in {self.path}; accounts: {listed}"
        )

    def unset_secrets(self, *, active_only: bool = False) -> list[Problem]:
        """Each connector or outgoing-server setting whose ``${VAR}`` is not set, with its position.

        Commands that connect (``run``) refuse to start with any; ``check`` reports them all.
        """
        accounts = [a for a in self.accounts if a.active or not active_only]
        unset = [p for a in accounts for p in unset_secrets(a.connector)]
        return unset + [p for server in self.outgoing.servers for p in unset_secrets(server.settings)]

    def account_spans(self, account: AccountConfig) -> Spans:
        """Where each key of ``account`` was written (a loaded config has every account it lists)."""
        index = next((i for i, a in enumerate(self.accounts) if a.name == account.name), -1)
        return self.spans.section("accounts").item(index)

    def own_addresses(self) -> frozenset[str]:
        """Every address mailgate receives or sends as (lower-cased): mail from one is never answered."""
        return self._own_addresses

    @cached_property
    def _own_addresses(self) -> frozenset[str]:  # asked for every message that may be answered
        found = [a.address for a in self.accounts] + [a.from_address for a in self.accounts]
        found += [s.from_address for s in self.outgoing.servers]
        return frozenset(a.strip().lower() for a in found if a and a.strip())


def find_config_path(explicit: str | None) -> Path:
    """The config file: ``--config``, else ``$MAILGATE_CONFIG``, else ./mailgate.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return Path.cwd() / CONFIG_FILENAME


def load_config(path: Path) -> Config:
    """Read and validate a config file; ConfigError lists every mistake with its position."""
    if not path.exists():
        raise ConfigError(
            [Problem(str(path), 1, 1, "config file not found (run 'mailgate init' to create one)")]
        )
    data = load_yaml_file(path)
    problems = Problems(str(path))
    config = _read_config(data, path, problems)
    problems.raise_if_any()
    assert config is not None
    return config


_TOP_KEYS = (
    "database",
    "product_name",
    "messaging",
    "processing",
    "mail_domain",
    "accounts",
    "outgoing",
    "service",
    "database_timeouts",
)
_ACCOUNT_KEYS = (
    "name",
    "connector",
    "rule_pack",
    "flags",
    "call_template",
    "default_logging_analyst",
    "reopen_assign_to",
    "address",
    "active",
    "poll_interval_seconds",
    "outgoing",
    "from_address",
    "authentication",
)


def _read_config(data: Any, path: Path, problems: Problems) -> Config | None:
    if not is_mapping(data):
        problems.at(data, None, "the config must be a mapping with keys " + ", ".join(_TOP_KEYS))
        return None
    check_keys(data, _TOP_KEYS, "the config", problems)
    database = get_value(data, "database", str, problems, "sqlite:///mailgate.sqlite")
    database = _resolve_sqlite(database, path.parent)
    messaging = get_section(data, "messaging", "a mapping", problems)
    check_keys(messaging, ("email_at_update_via_email_in",), "messaging", problems)
    email_at_update = get_value(messaging, "email_at_update_via_email_in", bool, problems, False)
    processing = get_section(data, "processing", "a mapping", problems)
    check_keys(
        processing, ("time_limit_seconds", "keep_originals_days", "keep_sent_days"), "processing", problems
    )
    time_limit = get_value(processing, "time_limit_seconds", float, problems, 30.0)
    if time_limit <= 0:
        problems.at(processing, "time_limit_seconds", "time_limit_seconds must be positive")
    keep_originals_days = get_value(processing, "keep_originals_days", int, problems, 90)
    if keep_originals_days < 0:
        problems.at(processing, "keep_originals_days", "keep_originals_days must be 0 (keep none) or more")
    keep_sent_days = get_value(processing, "keep_sent_days", int, problems, 90)
    if keep_sent_days < 0:
        problems.at(processing, "keep_sent_days", "keep_sent_days must be 0 (never delete) or more")
    accounts: list[AccountConfig] = []
    raw_accounts = data.get("accounts")
    if raw_accounts is None:
        raw_accounts = []
    if not is_sequence(raw_accounts):
        problems.at(data, "accounts", "accounts must be a list")
        raw_accounts = []
    seen: set[str] = set()
    for index, node in enumerate(raw_accounts):
        account = _read_account(raw_accounts, index, node, problems)
        if account is None:
            continue
        if account.name in seen:
            problems.at(node, "name", f"duplicate account name {account.name!r}")
        seen.add(account.name)
        accounts.append(account)
    outgoing = read_outgoing(data, raw_accounts, accounts, problems)
    return Config(
        path=path.resolve(),
        database=database,
        product_name=get_value(data, "product_name", str, problems, "mailgate"),
        email_at_update_via_email_in=email_at_update,
        mail_domain=get_value(data, "mail_domain", str, problems, "mailgate.invalid"),
        time_limit_seconds=time_limit,
        keep_originals_days=keep_originals_days,
        keep_sent_days=keep_sent_days,
        accounts=tuple(accounts),
        outgoing=outgoing,
        service=read_service(data, problems),
        database_timeouts=read_database_timeouts(data, problems),
        spans=spans_of(str(path.resolve()), data, Span(str(path.resolve()), 1, 1)),
    )


_SQLITE_FILE = re.compile(r"^(sqlite(?:\+\w+)?:///)(?!/)(?!:memory:)(.+)$")


def _resolve_sqlite(url: str, base: Path) -> str:
    """A relative SQLite file (``sqlite:///data/x.sqlite``) is taken relative to the config's folder."""
    found = _SQLITE_FILE.match(url)
    if found is None:
        return url
    return found[1] + str((base / found[2]).resolve())


def _read_account(parent: Any, index: int, node: Any, problems: Problems) -> AccountConfig | None:
    if not is_mapping(node):
        problems.at(parent, index, "each account must be a mapping with at least a name")
        return None
    check_keys(node, _ACCOUNT_KEYS, "an account", problems)
    name = get_value(node, "name", str, problems)
    if node.get("name") is None or name == "":
        problems.at(node, "name" if "name" in node else None, "an account needs a name (e.g. name: helpdesk)")
    connector = _read_connector(node, problems)
    flags_node = get_section(node, "flags", "a mapping of flag names to true/false", problems)
    flag_names = tuple(f.name for f in fields(Flags))
    check_keys(flags_node, flag_names, "flags", problems)
    flag_values: dict[str, bool] = {}
    for flag in flag_names:
        value = get_value(flags_node, flag, bool, problems)
        if value is not None:
            flag_values[flag] = value
    template_node = get_section(node, "call_template", "a mapping", problems)
    template_names = tuple(f.name for f in fields(CallTemplate))
    check_keys(template_node, template_names, "call_template", problems)
    template_values = {key: get_value(template_node, key, str, problems) for key in template_names}
    reopen = get_value(node, "reopen_assign_to", str, problems, "last_analyst")
    if reopen not in REOPEN_ASSIGN_CHOICES:
        problems.at(
            node, "reopen_assign_to", f"reopen_assign_to must be one of {', '.join(REOPEN_ASSIGN_CHOICES)}"
        )
    poll_interval = get_value(node, "poll_interval_seconds", float, problems, 60.0)
    if poll_interval <= 0:
        problems.at(node, "poll_interval_seconds", "poll_interval_seconds must be positive")
    authentication = read_authentication(node, problems)
    if not name:
        return None
    return AccountConfig(
        name=name,
        connector=connector,
        rule_pack=get_value(node, "rule_pack", str, problems, "default"),
        flags=Flags(**flag_values),
        call_template=CallTemplate(**template_values),
        default_logging_analyst=get_value(node, "default_logging_analyst", str, problems),
        reopen_assign_to=reopen,
        address=get_value(node, "address", str, problems),
        active=get_value(node, "active", bool, problems, True),
        poll_interval_seconds=poll_interval,
        outgoing=get_value(node, "outgoing", str, problems),
        from_address=get_value(node, "from_address", str, problems),
        authentication=authentication,
    )


def _read_connector(node: Any, problems: Problems) -> dict[str, Any]:
    """The account's ``connector:`` mapping, secrets expanded, checked against its connector's settings.

    ``connector: NAME`` means ``{type: NAME}``; no connector means ``folder`` (whose path defaults to
    ``mailbox`` beside the config). Each mistake is reported at its key. The mapping is returned as
    written plus expanded secrets; ``connectors.registry.make_connector`` builds the settings from it.
    """
    raw = node.get("connector", "folder")
    source: Any = raw if is_mapping(raw) else None
    if isinstance(raw, str):
        raw_map: dict[str, Any] = {"type": raw}
    elif source is not None:
        raw_map = dict(source)
    else:
        problems.at(node, "connector", "connector must be a type name or a mapping with a 'type'")
        return {"type": "folder"}
    kind = raw_map.get("type")
    if source is not None and "type" not in source:
        problems.at(node, "connector", f"the connector needs a type: one of {', '.join(connector_names())}")
    elif not isinstance(kind, str):
        problems.at(source, "type", f"the connector type must be one of {', '.join(connector_names())}")
    cls = None
    if isinstance(kind, str):
        try:
            cls = connector_class(kind)
        except UnknownConnector as exc:
            problems.at(*((source, "type") if source is not None else (node, "connector")), str(exc))
    hints = typing.get_type_hints(cls.Settings) if cls is not None else {}
    secrets_found = True
    for key in list(raw_map) if source is not None else ():
        before = len(problems.items)
        raw_map[key] = expand_env(source[key], source, key, problems, defer_unset=True)
        secrets_found = secrets_found and len(problems.items) == before and not is_unset(raw_map[key])
        if isinstance(source[key], str) and ENV_REF.search(source[key]) and key in hints:
            raw_map[key] = typed_env_text(hints[key], raw_map[key])
    if cls is None or not secrets_found:  # a missing secret's own problem says enough
        return raw_map
    settings_fields = {f.name for f in fields(cls.Settings)}
    for wrong_key, message in build_settings(str(kind), raw_map)[1]:
        if source is None or wrong_key is None or wrong_key not in source:
            problems.at(node, "connector", message)
        elif wrong_key in settings_fields:
            problems.at(source, wrong_key, message)
        else:
            problems.at_key(source, wrong_key, message)
    return raw_map

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
from pathlib import Path
from typing import Any

from connectors.registry import BUILTIN, UnknownConnector, build_settings, connector_class, connector_names
from engine.errors import ConfigError, MailgateError, Problem, did_you_mean
from engine.outgoing.settings import DEFAULT_PERMANENT_CODES, OutgoingConfig, OutgoingServer
from engine.params import type_error
from engine.yamlsource import Problems, is_mapping, is_sequence, load_yaml_file

CONFIG_FILENAME = "mailgate.yaml"
CONFIG_ENV = "MAILGATE_CONFIG"
KNOWN_CONNECTORS = tuple(BUILTIN)  # installed packages may add more: connector_names()
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

    @property
    def connector_type(self) -> str:
        """The connector's registered name (``folder``, ``imap``, ...)."""
        return str(self.connector.get("type", "folder"))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    database: str
    product_name: str = "mailgate"
    email_at_update_via_email_in: bool = False
    mail_domain: str = "mailgate.invalid"
    time_limit_seconds: float = 30.0
    accounts: tuple[AccountConfig, ...] = ()
    outgoing: OutgoingConfig = field(default_factory=OutgoingConfig)

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

    def own_addresses(self) -> frozenset[str]:
        """Every address mailgate receives or sends as (lower-cased): mail from one is never answered."""
        found = [a.address for a in self.accounts] + [a.from_address for a in self.accounts]
        found += [s.from_address for s in self.outgoing.servers]
        return frozenset(a.strip().lower() for a in found if a and a.strip())


_ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


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


def _expand_env(value: Any, node: Any, key: Any, problems: Problems) -> Any:
    if not isinstance(value, str):
        return value

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.at(node, key, f"environment variable {name} is not set")
            return ""
        return os.environ[name]

    return _ENV_REF.sub(repl, value)


def _check_keys(node: Any, allowed: tuple[str, ...], where: str, problems: Problems) -> None:
    for key in node:
        if key not in allowed:
            problems.at_key(node, key, f"unknown key {key!r} in {where}{did_you_mean(str(key), allowed)}")


def _get(node: Any, key: str, kind: type | tuple[type, ...], problems: Problems, default: Any = None) -> Any:
    if key not in node or node[key] is None:
        return default
    value = _expand_env(node[key], node, key, problems)
    if kind is bool and not isinstance(value, bool):
        problems.at(node, key, f"{key} must be true or false, not {value!r}")
        return default
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        problems.at(node, key, f"{key} must be {wanted}, not {_describe(value)}")
        return default
    return value


_KIND_NAMES: dict[type, str] = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _describe(value: Any) -> str:
    """How a wrong value is shown: short values as written, containers by what they are."""
    if is_mapping(value):
        return "a mapping"
    if is_sequence(value):
        return "a list"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return repr(value)


def _section(node: Any, key: str, what: str, problems: Problems) -> Any:
    """The mapping at ``node[key]`` ({} when absent or empty); anything else is a mistake."""
    value = node.get(key)
    if value is None:
        return {}
    if not is_mapping(value):
        problems.at(node, key, f"{key} must be {what}")
        return {}
    return value


_TOP_KEYS = ("database", "product_name", "messaging", "processing", "mail_domain", "accounts", "outgoing")
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
)


def _read_config(data: Any, path: Path, problems: Problems) -> Config | None:
    if not is_mapping(data):
        problems.at(data, None, "the config must be a mapping with keys " + ", ".join(_TOP_KEYS))
        return None
    _check_keys(data, _TOP_KEYS, "the config", problems)
    database = _get(data, "database", str, problems, "sqlite:///mailgate.sqlite")
    database = _resolve_sqlite(database, path.parent)
    messaging = _section(data, "messaging", "a mapping", problems)
    _check_keys(messaging, ("email_at_update_via_email_in",), "messaging", problems)
    email_at_update = _get(messaging, "email_at_update_via_email_in", bool, problems, False)
    processing = _section(data, "processing", "a mapping", problems)
    _check_keys(processing, ("time_limit_seconds",), "processing", problems)
    time_limit = _get(processing, "time_limit_seconds", float, problems, 30.0)
    if time_limit <= 0:
        problems.at(processing, "time_limit_seconds", "time_limit_seconds must be positive")
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
    outgoing = _read_outgoing(data, raw_accounts, accounts, problems)
    return Config(
        path=path.resolve(),
        database=database,
        product_name=_get(data, "product_name", str, problems, "mailgate"),
        email_at_update_via_email_in=email_at_update,
        mail_domain=_get(data, "mail_domain", str, problems, "mailgate.invalid"),
        time_limit_seconds=time_limit,
        accounts=tuple(accounts),
        outgoing=outgoing,
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
    _check_keys(node, _ACCOUNT_KEYS, "an account", problems)
    name = _get(node, "name", str, problems)
    if node.get("name") is None or name == "":
        problems.at(node, "name" if "name" in node else None, "an account needs a name (e.g. name: helpdesk)")
    connector = _read_connector(node, problems)
    flags_node = _section(node, "flags", "a mapping of flag names to true/false", problems)
    flag_names = tuple(f.name for f in fields(Flags))
    _check_keys(flags_node, flag_names, "flags", problems)
    flag_values: dict[str, bool] = {}
    for flag in flag_names:
        value = _get(flags_node, flag, bool, problems)
        if value is not None:
            flag_values[flag] = value
    template_node = _section(node, "call_template", "a mapping", problems)
    template_names = tuple(f.name for f in fields(CallTemplate))
    _check_keys(template_node, template_names, "call_template", problems)
    template_values = {key: _get(template_node, key, str, problems) for key in template_names}
    reopen = _get(node, "reopen_assign_to", str, problems, "last_analyst")
    if reopen not in REOPEN_ASSIGN_CHOICES:
        problems.at(
            node, "reopen_assign_to", f"reopen_assign_to must be one of {', '.join(REOPEN_ASSIGN_CHOICES)}"
        )
    poll_interval = _get(node, "poll_interval_seconds", float, problems, 60.0)
    if poll_interval <= 0:
        problems.at(node, "poll_interval_seconds", "poll_interval_seconds must be positive")
    if not name:
        return None
    return AccountConfig(
        name=name,
        connector=connector,
        rule_pack=_get(node, "rule_pack", str, problems, "default"),
        flags=Flags(**flag_values),
        call_template=CallTemplate(**template_values),
        default_logging_analyst=_get(node, "default_logging_analyst", str, problems),
        reopen_assign_to=reopen,
        address=_get(node, "address", str, problems),
        active=_get(node, "active", bool, problems, True),
        poll_interval_seconds=poll_interval,
        outgoing=_get(node, "outgoing", str, problems),
        from_address=_get(node, "from_address", str, problems),
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
        raw_map[key] = _expand_env(source[key], source, key, problems)
        secrets_found = secrets_found and len(problems.items) == before
        if isinstance(source[key], str) and _ENV_REF.search(source[key]) and key in hints:
            raw_map[key] = _typed_env_text(hints[key], raw_map[key])
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


def _typed_env_text(hint: Any, text: Any) -> Any:
    """A secret's text as the number or true/false its setting expects (``port: ${IMAP_PORT}``)."""
    if not isinstance(text, str) or type_error(hint, text) is None:
        return text
    word = text.strip().lower()
    candidates: list[Any] = [word == "true"] if word in ("true", "false") else []
    if re.fullmatch(r"[+-]?\d+", word):
        candidates.append(int(word))
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?", word):
        candidates.append(float(word))
    return next((value for value in candidates if type_error(hint, value) is None), text)


# --- outgoing mail (engine.outgoing) -----------------------------------------------------------------

_OUTGOING_KEYS = (
    "servers",
    "max_attempts",
    "retry_delay_seconds",
    "max_retry_delay_seconds",
    "sending_timeout_seconds",
    "replies_per_sender_per_hour",
    "permanent_codes",
)


def _read_outgoing(
    data: Any, raw_accounts: Any, accounts: list[AccountConfig], problems: Problems
) -> OutgoingConfig:
    node = _section(data, "outgoing", "a mapping with servers and delivery settings", problems)
    _check_keys(node, _OUTGOING_KEYS, "outgoing", problems)
    defaults = OutgoingConfig()
    numbers: dict[str, Any] = {}
    for key, kind, minimum in (
        ("max_attempts", int, 1),
        ("retry_delay_seconds", float, 0),
        ("max_retry_delay_seconds", float, 0),
        ("sending_timeout_seconds", float, 1),
        ("replies_per_sender_per_hour", int, 1),
    ):
        value = _get(node, key, kind, problems, getattr(defaults, key))
        if value < minimum:
            problems.at(node, key, f"{key} must be at least {minimum}")
        numbers[key] = value
    codes = node.get("permanent_codes", list(DEFAULT_PERMANENT_CODES))
    if not is_sequence(codes) or not all(isinstance(c, int) and 400 <= c <= 599 for c in codes):
        problems.at(node, "permanent_codes", "permanent_codes must be a list of SMTP codes (400 to 599)")
        codes = DEFAULT_PERMANENT_CODES
    servers = _read_servers(node, problems)
    names = [s.name for s in servers]
    for account_node, account in zip(_account_nodes(raw_accounts), accounts, strict=False):
        if account.outgoing is not None and account.outgoing not in names:
            listed = ", ".join(names) or "none"
            problems.at(
                account_node,
                "outgoing",
                f"no outgoing server named {account.outgoing!r}{did_you_mean(account.outgoing, names)}"
                f"; outgoing servers: {listed}",
            )
        server = OutgoingConfig(servers=tuple(servers)).server(account.outgoing)
        if server is not None and not (account.from_address or account.address or server.from_address):
            problems.at(
                account_node,
                None,
                f"account {account.name!r} has no address to send from: set from_address (or address) "
                f"here, or from_address on outgoing server {server.name!r}",
            )
    return OutgoingConfig(servers=tuple(servers), permanent_codes=tuple(codes), **numbers)


def _account_nodes(raw_accounts: Any) -> list[Any]:
    return [n for n in raw_accounts if is_mapping(n) and n.get("name")] if is_sequence(raw_accounts) else []


def _read_servers(node: Any, problems: Problems) -> list[OutgoingServer]:
    from engine.outgoing.transport import UnknownTransport, build_transport_settings, transport_class

    raw = node.get("servers") or []
    if not is_sequence(raw):
        problems.at(node, "servers", "outgoing servers must be a list of mappings, each with a name")
        return []
    servers: list[OutgoingServer] = []
    for index, entry in enumerate(raw):
        if not is_mapping(entry) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            problems.at(raw, index, "each outgoing server must be a mapping with a name (e.g. name: main)")
            continue
        values = {str(k): _expand_env(v, entry, k, problems) for k, v in entry.items()}
        kind = values.setdefault("type", "smtp")
        if any(s.name == values["name"] for s in servers):
            problems.at(entry, "name", f"duplicate outgoing server name {values['name']!r}")
        try:
            _, mistakes = build_transport_settings(str(kind), values)
        except UnknownTransport as exc:
            problems.at(entry, "type", str(exc))
            continue
        known = {f.name for f in fields(transport_class(str(kind)).Settings)}
        for key, message in mistakes:
            if key is not None and key in entry:
                (problems.at if key in known else problems.at_key)(entry, key, message)
            else:
                problems.at(entry, None, message)
        from_address = values.get("from_address")
        servers.append(
            OutgoingServer(
                name=values["name"],
                type=str(kind),
                settings=values,
                from_address=from_address if isinstance(from_address, str) else None,
            )
        )
    return servers

"""Reads the config's ``outgoing:`` section into an ``OutgoingConfig``, every mistake at its line.

Called by ``engine.config.model`` (which it must not import: the accounts arrive already read). Each
server's own keys are checked against its transport's settings class (``connectors.registry``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Protocol

from connectors.registry import UnknownTransport, build_transport_settings, transport_class
from engine.config.outgoing import DEFAULT_PERMANENT_CODES, OutgoingConfig, OutgoingServer
from engine.config.reader import check_keys, expand_env, get_section, get_value, is_unset
from engine.config.yaml_source import Problems, is_mapping, is_sequence
from engine.errors import did_you_mean

OUTGOING_KEYS = (
    "servers",
    "max_attempts",
    "retry_delay_seconds",
    "max_retry_delay_seconds",
    "sending_timeout_seconds",
    "replies_per_sender_per_hour",
    "permanent_codes",
)


class SendingAccount(Protocol):
    """What the outgoing reader needs of a read account (``engine.config.model.AccountConfig``)."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str | None: ...

    @property
    def outgoing(self) -> str | None: ...

    @property
    def from_address(self) -> str | None: ...


def read_outgoing(
    data: Any, raw_accounts: Any, accounts: Sequence[SendingAccount], problems: Problems
) -> OutgoingConfig:
    """The ``outgoing:`` section of ``data``; also checks each account's server name and sender."""
    node = get_section(data, "outgoing", "a mapping with servers and delivery settings", problems)
    check_keys(node, OUTGOING_KEYS, "outgoing", problems)
    defaults = OutgoingConfig()
    numbers: dict[str, Any] = {}
    for key, kind, minimum in (
        ("max_attempts", int, 1),
        ("retry_delay_seconds", float, 0),
        ("max_retry_delay_seconds", float, 0),
        ("sending_timeout_seconds", float, 1),
        ("replies_per_sender_per_hour", int, 1),
    ):
        value = get_value(node, key, kind, problems, getattr(defaults, key))
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
    raw = node.get("servers") or []
    if not is_sequence(raw):
        problems.at(node, "servers", "outgoing servers must be a list of mappings, each with a name")
        return []
    servers: list[OutgoingServer] = []
    for index, entry in enumerate(raw):
        if not is_mapping(entry) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            problems.at(raw, index, "each outgoing server must be a mapping with a name (e.g. name: main)")
            continue
        values = {
            str(k): expand_env(v, entry, k, problems, defer_unset=k not in ("name", "type"))
            for k, v in entry.items()
        }
        kind = values.setdefault("type", "smtp")
        if any(s.name == values["name"] for s in servers):
            problems.at(entry, "name", f"duplicate outgoing server name {values['name']!r}")
        try:
            _, mistakes = build_transport_settings(str(kind), values)
        except UnknownTransport as exc:
            problems.at(entry, "type", str(exc))
            continue
        if any(is_unset(value) for value in values.values()):
            mistakes = []  # checked where the server is used, once its secret is there (config/secrets.py)
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

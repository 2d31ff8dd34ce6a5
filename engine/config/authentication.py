"""An account's ``authentication:`` section: whose word about a sender it trusts (docs/security.md).

Contract: ``read_authentication`` returns an ``AuthenticationSettings`` and records every mistake
in ``problems`` at its key; it never raises. Names are lower-cased; an omitted section means
nothing is trusted (every sender is unauthenticated unless another source, such as a reply
token, vouches for them).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from engine.config.reader import check_keys, get_section, get_value
from engine.config.yaml_source import Problems, is_sequence

DEFAULT_DNS_PORT = 53


@dataclass(frozen=True)
class DnsServer:
    """One DNS server to ask for DKIM keys and DMARC policies."""

    address: str
    port: int = DEFAULT_DNS_PORT


@dataclass(frozen=True)
class AuthenticationSettings:
    """Which results an account believes, and whether it checks DKIM itself.

    ``trusted_authserv_ids``: the authserv-ids of our own boundary's Authentication-Results
    (RFC 8601). ``trusted_relays``: the hosts (``mx2.example.com``, ``*.example.com``, or an IP
    network) that may add Received headers above those results besides the authserv hosts.
    ``trusted_arc_sealers``: the domains whose ARC sets (RFC 8617) are believed. ``verify_dkim``:
    check DKIM signatures and DMARC alignment ourselves when no trusted result is present.
    ``dns_servers``: where those look-ups go (empty: the system's resolver).
    """

    trusted_authserv_ids: tuple[str, ...] = ()
    trusted_relays: tuple[str, ...] = ()
    trusted_arc_sealers: tuple[str, ...] = ()
    verify_dkim: bool = False
    dns_servers: tuple[DnsServer, ...] = ()

    @property
    def configured(self) -> bool:
        """Whether any source of evidence is switched on for this account."""
        return bool(self.trusted_authserv_ids) or self.verify_dkim


_KEYS = ("trusted_authserv_ids", "trusted_relays", "trusted_arc_sealers", "verify_dkim", "dns_servers")


def read_authentication(node: Any, problems: Problems) -> AuthenticationSettings:
    """The account's ``authentication:`` mapping, validated (see ``AuthenticationSettings``)."""
    section = get_section(node, "authentication", "a mapping with " + ", ".join(_KEYS), problems)
    check_keys(section, _KEYS, "authentication", problems)
    ids = _names(section, "trusted_authserv_ids", problems)
    relays = _names(section, "trusted_relays", problems)
    for index, relay in enumerate(relays):
        if "*" in relay.removeprefix("*.") or relay == "*.":
            problems.at(section["trusted_relays"], index, f"{relay!r}: a wildcard is only '*.' in front")
        elif "/" in relay and not _is_network(relay):
            problems.at(section["trusted_relays"], index, f"{relay!r} is not an IP network (10.0.0.0/8)")
    sealers = _names(section, "trusted_arc_sealers", problems)
    servers: list[DnsServer] = []
    for index, text in enumerate(_names(section, "dns_servers", problems)):
        server = parse_dns_server(text)
        if server is None:
            problems.at(
                section["dns_servers"], index, f"{text!r} is not an IP address, IP:port or [IPv6]:port"
            )
        else:
            servers.append(server)
    return AuthenticationSettings(
        trusted_authserv_ids=ids,
        trusted_relays=relays,
        trusted_arc_sealers=sealers,
        verify_dkim=get_value(section, "verify_dkim", bool, problems, False),
        dns_servers=tuple(servers),
    )


def _names(section: Any, key: str, problems: Problems) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not is_sequence(value) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.at(section, key, f"{key} must be a list of names, e.g. [mx.example.com]")
        return ()
    return tuple(dict.fromkeys(v.strip().lower().rstrip(".") for v in value))


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def parse_dns_server(text: str) -> DnsServer | None:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``2001:db8::1`` or ``[2001:db8::1]:5353``; None if neither."""
    host, port = text, DEFAULT_DNS_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit():
            return None
        port = int(number)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return DnsServer(str(address), port) if 0 < port < 65536 else None

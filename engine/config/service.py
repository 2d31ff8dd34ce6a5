"""The ``service:`` section of the config: where ``mailgate run`` serves its monitoring endpoint and
the admin console, how often it writes its heartbeat, how long an account's lease lasts.

```yaml
service:
  http: 127.0.0.1:9464     # /metrics (Prometheus) and /healthz; absent: no HTTP server at all
  heartbeat_seconds: 15    # `mailgate status` calls the service stopped after 4 missed heartbeats
  lease_seconds: 30        # a killed process's accounts are taken over by the others within this
  web: 127.0.0.1:8025      # the admin console (docs/console.md); absent: no console
  web_user_header: X-Remote-User  # trust a reverse proxy's signed-in user (absent: log in by password)
```
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from engine.config.reader import check_keys, get_section, get_value
from engine.config.yaml_source import Problems

DEFAULT_HEARTBEAT_SECONDS = 15.0
DEFAULT_LEASE_SECONDS = 30.0
MIN_LEASE_SECONDS = 1.0  # below this a busy machine's pauses would cost leases


@dataclass(frozen=True)
class ListenAddress:
    """A TCP address to listen on: a host (an IP address or a name) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServiceConfig:
    """How the running service shows itself: its HTTP endpoint (None: none) and its heartbeat."""

    http: ListenAddress | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # an account's lease (docs/scaling.md)
    web: ListenAddress | None = None  # the admin console (docs/console.md)
    web_user_header: str | None = None  # a trusted reverse proxy's signed-in user


def parse_listen_address(text: str) -> ListenAddress:
    """``HOST:PORT`` (``[IPv6]:PORT`` for IPv6) or a bare ``PORT`` (loopback); ValueError if neither."""
    text = text.strip()
    host, port_text = "127.0.0.1", text
    if ":" in text:
        host, _, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            ipaddress.IPv6Address(host)  # ValueError names the mistake
        elif ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, as [{host}]:{port_text}")
        if not host:
            raise ValueError(f"no host before the port in {text!r} (e.g. 127.0.0.1:{port_text})")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535, not {port_text!r}")
    return ListenAddress(host, int(port_text))


def read_service(data: Any, problems: Problems) -> ServiceConfig:
    """The validated ``service:`` section (defaults when it is absent)."""
    node = get_section(
        data, "service", "a mapping with http, heartbeat_seconds, lease_seconds and web", problems
    )
    check_keys(
        node, ("http", "heartbeat_seconds", "lease_seconds", "web", "web_user_header"), "service", problems
    )
    http = _address(node, "http", "127.0.0.1:9464", problems)
    web = _address(node, "web", "127.0.0.1:8025", problems)
    header = get_value(node, "web_user_header", str, problems)
    if header is not None and not _HEADER_NAME.fullmatch(header):
        problems.at(node, "web_user_header", "web_user_header must be a header name, e.g. X-Remote-User")
        header = None
    heartbeat = get_value(node, "heartbeat_seconds", float, problems, DEFAULT_HEARTBEAT_SECONDS)
    if heartbeat <= 0:
        problems.at(node, "heartbeat_seconds", "heartbeat_seconds must be positive")
        heartbeat = DEFAULT_HEARTBEAT_SECONDS
    lease = get_value(node, "lease_seconds", float, problems, DEFAULT_LEASE_SECONDS)
    if lease < MIN_LEASE_SECONDS:
        problems.at(node, "lease_seconds", f"lease_seconds must be at least {MIN_LEASE_SECONDS:g}")
        lease = DEFAULT_LEASE_SECONDS
    return ServiceConfig(
        http=http, heartbeat_seconds=heartbeat, lease_seconds=lease, web=web, web_user_header=header
    )


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def _address(node: Any, key: str, example: str, problems: Problems) -> ListenAddress | None:
    written = get_value(node, key, (str, int), problems)
    if written is None:
        return None
    try:
        return parse_listen_address(str(written))
    except ValueError as exc:
        problems.at(node, key, f"{key} must be HOST:PORT, e.g. {example}: {exc}")
        return None

"""A real DNS server on loopback (dnslib, UDP) serving TXT records the tests publish.

mailgate is pointed at it through configuration (an account's ``authentication.dns_servers``),
never by patching a resolver. ``publish(name, text)`` adds a record; ``clear()`` empties the zone.
Records and absences have TTL 0 (nothing is cached between tests). A name with no record answers NXDOMAIN;
a name made to ``fail`` answers SERVFAIL (a broken server).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def _chunks(text: str) -> list[bytes]:
    data = text.encode("ascii")
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


@dataclass
class _Zone(BaseResolver):  # type: ignore[misc]
    records: dict[str, list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    questions: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(self, request: Any, handler: Any) -> Any:
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.questions.append(name)
            texts = list(self.records.get(name, ()))
            failing = name in self.failing
        reply = request.reply()
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif request.q.qtype == QTYPE.TXT and texts:
            for text in texts:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(_chunks(text)), ttl=0))
        elif not texts:  # with an SOA of TTL 0, so that no resolver caches the absence either
            reply.header.rcode = RCODE.NXDOMAIN
            soa = SOA("ns.test.", "admin.test.", (1, 60, 60, 60, 0))
            reply.add_auth(RR(".", QTYPE.SOA, rdata=soa, ttl=0))  # the root: above every name
        return reply


class DnsTestServer:
    """The running server: ``address`` (``127.0.0.1:PORT``, the form ``dns_servers`` takes)."""

    def __init__(self) -> None:
        self.zone = _Zone()
        logger = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._server = DNSServer(self.zone, address="127.0.0.1", port=0, logger=logger)
        self._server.start_thread()
        self.port = int(self._server.server.server_address[1])
        self.address = f"127.0.0.1:{self.port}"

    def publish(self, name: str, text: str) -> None:
        """Add a TXT record (several records may share a name)."""
        with self.zone.lock:
            self.zone.records.setdefault(name.rstrip(".").lower(), []).append(text)

    def fail(self, name: str) -> None:
        """Make questions for ``name`` answer SERVFAIL, as a broken server's would."""
        with self.zone.lock:
            self.zone.failing.add(name.rstrip(".").lower())

    def asked(self) -> list[str]:
        """The names asked for so far."""
        with self.zone.lock:
            return list(self.zone.questions)

    def clear(self) -> None:
        """Forget every record, every failure and every question."""
        with self.zone.lock:
            self.zone.records.clear()
            self.zone.failing.clear()
            self.zone.questions.clear()

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

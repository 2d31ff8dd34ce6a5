"""A TCP proxy on loopback for fault tests: in front of a real server, it passes, cuts or freezes traffic.

``TcpProxy(host, port)`` listens on a free loopback port (``proxy.port``) and forwards every
connection to ``host:port``, byte for byte, in both directions. Its mode changes at any time:

- ``pass_traffic()``: forward (the start). Connections held by a freeze resume: what was sent
  meanwhile is delivered then, as after a network partition heals.
- ``freeze()``: a black hole. Open connections stay open but nothing more is forwarded either
  way; new connections are accepted (the client's connect succeeds) and never forwarded. TCP
  itself stays healthy (the proxy's kernel acknowledges every byte), so only a client's own time
  limits notice: the case of a server that hangs, or of a middlebox that forgets a connection.
- ``refuse()``: an outage. Every open connection is reset (RST) and every new one is reset at
  once, as a server that is down refuses it.
- ``cut()``: reset every open connection now; new ones are forwarded as usual (a blip).
- ``freeze_on(pattern)``: freeze when ``pattern`` next goes to the server, holding that chunk
  (a server that stops answering at a chosen request).
- ``cut_on(pattern)``: reset the connection that next sends ``pattern`` to the server, before the
  server sees that chunk (a connection lost between two commands of a protocol).

``accepted`` counts the connections accepted so far (a test waits on it to know that a client is
connecting), ``held`` the chunks a freeze holds back (a client waiting for an answer), ``answers``
the round trips: the times a server answered what a client had sent since its last answer (a
server such as PostgreSQL answers a pipeline once, when asked to; bytes of one answer that arrive
in pieces count once, as the client sends nothing before it has them all). ``statements`` (with
``postgres=True``) counts the statements PostgreSQL clients asked the server to run: the Execute
and Query messages of its wire protocol, on unencrypted connections only (connect with
``sslmode=disable``). Threads, not asyncio: the proxy runs beside a test that blocks.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

PASS, FROZEN, REFUSING = "pass", "frozen", "refusing"


class _Pair:
    """One client connection and its connection to the server; two threads pump bytes between them."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.server: socket.socket | None = None
        self.lock = threading.Lock()
        self.closed = False
        self.asked = False  # the client sent something the server has not answered yet
        self.upstream: _PostgresMessages | None = None  # set by a proxy that counts statements

    def reset(self) -> None:
        """Close both sides with RST (linger 0); the pumps see the end and stop."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for sock in (self.client, self.server):
                if sock is None:
                    continue
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)  # wakes a pump blocked in recv
                except OSError:
                    pass
                sock.close()


_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


class _PostgresMessages:
    """Splits what a PostgreSQL client sends into the protocol's messages, counting statements."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.started = False  # the startup message (no type byte) went by
        self.broken = False  # not PostgreSQL's protocol (or encrypted): nothing more is counted

    def feed(self, data: bytes) -> int:
        """Read ``data``; the number of statements (Execute or Query messages) it completed."""
        if self.broken:
            return 0
        self.pending += data
        counted = 0
        while True:
            header = 8 if not self.started else 5
            if len(self.pending) < header:
                return counted
            if not self.started:
                length, code = struct.unpack("!ii", self.pending[:8])
                size = length
            else:
                code, length = 0, struct.unpack("!i", self.pending[1:5])[0]
                size = 1 + length
            if length < 4 or length > 1 << 30:
                self.broken = True
                return counted
            if len(self.pending) < size:
                return counted
            if not self.started:
                self.started = code not in (_SSL_REQUEST, _GSS_REQUEST)
            else:
                counted += self.pending[:1] in (b"E", b"Q")
            del self.pending[:size]


class TcpProxy:
    """A proxy from ``127.0.0.1:port`` to ``target``; see the module docstring for its modes."""

    def __init__(self, host: str, port: int, *, postgres: bool = False) -> None:
        self.target = (host, port)
        self.postgres = postgres  # count the statements clients send (``statements``)
        self.mode = PASS
        self.accepted = 0
        self.held = 0
        self.answers = 0
        self.statements = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = False
        self._cut_pattern: bytes | None = None
        self._freeze_pattern: bytes | None = None
        threading.Thread(target=self._accept_loop, name="tcp-proxy accept", daemon=True).start()

    # --- modes --------------------------------------------------------------------------------------

    def pass_traffic(self) -> None:
        """Forward again (also what a freeze held back)."""
        self.mode = PASS
        self._flowing.set()

    def freeze(self) -> None:
        """Stop forwarding anything, on open and new connections alike (a black hole)."""
        self.mode = FROZEN
        self._flowing.clear()

    def refuse(self) -> None:
        """Reset every connection, open and new, until ``pass_traffic``."""
        self.mode = REFUSING
        self._flowing.set()
        self.cut()

    def cut(self) -> None:
        """Reset every open connection now."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.reset()

    def freeze_on(self, pattern: bytes) -> None:
        """Freeze as soon as a chunk to the server holds ``pattern`` (that chunk is held too)."""
        self._freeze_pattern = pattern

    def cut_on(self, pattern: bytes) -> None:
        """Reset the connection whose next chunk to the server holds ``pattern``, instead of sending it."""
        self._cut_pattern = pattern

    def close(self) -> None:
        """Stop listening and reset every connection."""
        self._stopped = True
        self._flowing.set()
        self._listener.close()
        self.cut()

    # --- internals ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            pair = _Pair(client)
            if self.postgres:
                pair.upstream = _PostgresMessages()
            if self.mode == REFUSING:
                pair.reset()
                continue
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._open, args=(pair,), name="tcp-proxy pair", daemon=True).start()

    def _open(self, pair: _Pair) -> None:
        self._flowing.wait()  # frozen: the client is connected to nothing
        try:
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
            for sock in (server, pair.client):  # as clients such as libpq: no Nagle delay on small writes
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._forget(pair)
            return
        with pair.lock:
            if pair.closed:
                server.close()
                return
            pair.server = server
        threading.Thread(target=self._pump, args=(pair, server, pair.client), daemon=True).start()
        self._pump(pair, pair.client, server, upstream=True)

    def _pump(
        self, pair: _Pair, source: socket.socket, sink: socket.socket, *, upstream: bool = False
    ) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                freezing = self._freeze_pattern
                if upstream and freezing is not None and freezing in data:
                    self._freeze_pattern = None
                    self.freeze()
                if not self._flowing.is_set():
                    self.held += 1
                self._flowing.wait()  # frozen: hold what was read until traffic passes again
                pattern = self._cut_pattern
                if upstream and pattern is not None and pattern in data:
                    self._cut_pattern = None
                    pair.reset()
                if pair.closed:
                    return
                if upstream:
                    pair.asked = True
                    if pair.upstream is not None:
                        self.statements += pair.upstream.feed(data)
                elif pair.asked:
                    pair.asked = False
                    self.answers += 1
                sink.sendall(data)
        except OSError:
            pass
        self._forget(pair)

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        if self.mode == REFUSING or pair.closed:
            pair.reset()
            return
        with pair.lock:  # one side ended cleanly: end the other side cleanly too
            if pair.closed:
                return
            pair.closed = True
            for sock in (pair.client, pair.server):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

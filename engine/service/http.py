"""The monitoring endpoint of ``mailgate run`` (``service.http`` or ``--http``): ``/metrics`` and
``/healthz``, served only where configured.

A WSGI server of the standard library in a thread of its own, one short-lived thread per request:
nothing it does runs on, or waits for, the service's event loop. It reads the watchers' counters
(``engine.service.stats``) and asks the database through ``BoundedCalls``, so that every answer
comes within ``DATABASE_TIMEOUT`` seconds, database or not. ``stop`` shuts the server down and
joins its thread and every request's thread: nothing is left running after the service.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

from engine.config.service import ListenAddress
from engine.errors import MailgateError
from engine.service.health import BoundedCalls, check_health
from engine.service.metrics import make_registry
from engine.service.stats import Monitored
from engine.storage.monitoring import ping

log = logging.getLogger("mailgate.service")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request or read the answer


class _QuietHandler(WSGIRequestHandler):
    """Requests are not logged (Prometheus scrapes every few seconds); a slow client is cut off."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing."""


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request, each joined when the server closes."""

    daemon_threads = False
    block_on_close = True


class MonitoringServer:
    """``/metrics`` (Prometheus) and ``/healthz`` (JSON) for a running service; ``start``, then ``stop``."""

    def __init__(self, address: ListenAddress, monitored: Monitored) -> None:
        self.address = address
        self.monitored = monitored
        self.database = BoundedCalls()
        self._metrics_app = make_wsgi_app(make_registry(monitored, self.database))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one given for port 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen and serve in a thread; MailgateError if the address cannot be listened on."""
        host, port = self.address.host, self.address.port
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            server_class = type("_BoundServer", (_Server,), {"address_family": family})
            self._server = server_class((host, port), _QuietHandler, bind_and_activate=True)
        except OSError as exc:
            raise MailgateError(f"cannot serve /metrics and /healthz on {self.address}: {exc}") from None
        self._server.set_app(self._route)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="mailgate-http"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; returns once every thread the server started has ended."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()  # ends serve_forever
        server.server_close()  # joins the requests' threads
        if thread is not None:
            thread.join()

    # --- the routes -----------------------------------------------------------------------------------

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", "text/plain", b"use GET\n")
        if path == "/healthz":
            return self._healthz(start_response)
        if path == "/":
            index = b"mailgate: /metrics (Prometheus), /healthz (JSON)\n"
            return _answer(start_response, "200 OK", "text/plain; charset=utf-8", index)
        return _answer(
            start_response, "404 Not Found", "text/plain", b"not found: try /metrics or /healthz\n"
        )

    def _healthz(self, start_response: StartResponse) -> Iterable[bytes]:
        monitored = self.monitored
        try:
            self.database.call(lambda: ping(monitored.engine))
            problem = None
        except Exception as exc:
            problem = str(getattr(exc, "orig", None) or exc).strip() or type(exc).__name__
        snapshots = [stats.snapshot() for stats in monitored.accounts]
        report = check_health(snapshots, monitored.started_at, problem, time.time())
        body = json.dumps(report.body, ensure_ascii=False, indent=2).encode() + b"\n"
        status = "200 OK" if report.healthy else "503 Service Unavailable"
        return _answer(start_response, status, "application/json", body)


def _answer(start_response: StartResponse, status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
    )
    return [body]

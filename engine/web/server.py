"""Serving the console with uvicorn: in the foreground (``mailgate web``) or in a thread beside the
service (``mailgate run`` with ``service.web`` or ``--web``, and the tests)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engine.config.model import Config
from engine.config.service import ListenAddress
from engine.errors import MailgateError
from engine.runtime import Runtime

NO_ADMIN = "no one can sign in to the console: create an admin first (mailgate admin add NAME)"


def _uvicorn_config(runtime: Runtime, address: ListenAddress) -> object:
    import uvicorn

    from engine.web.app import create_app

    app = create_app(runtime, user_header=runtime.config.service.web_user_header)
    return uvicorn.Config(
        app, host=address.host, port=address.port, log_level="warning", lifespan="off", server_header=False
    )


def check_can_sign_in(runtime: Runtime) -> None:
    """Refuse to serve a console no one could use (no admin, and no trusted proxy header)."""
    from engine.storage.console import list_admins  # its tables: only a process with a console needs them

    if runtime.config.service.web_user_header is None and not list_admins(runtime.engine):
        raise MailgateError(NO_ADMIN)


def serve_console(runtime: Runtime, address: ListenAddress) -> None:
    """Serve the console until SIGTERM or Ctrl-C (then return: exit status 0, as ``mailgate run``)."""
    check_can_sign_in(runtime)
    stopping = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = ConsoleServer(runtime, address)
    try:
        server.start()
        while server.serving and not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


class ConsoleServer:
    """The console in a thread of its own: ``start`` (returns once it listens), then ``stop``."""

    def __init__(self, runtime: Runtime, address: ListenAddress) -> None:
        import uvicorn

        config = _uvicorn_config(runtime, address)
        assert isinstance(config, uvicorn.Config)
        self.address = address
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mailgate-web")

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one given for port 0)."""
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def serving(self) -> bool:
        """Whether the server's thread still runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Listen and serve; MailgateError if it cannot listen."""
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise MailgateError(f"cannot serve the console on {self.address}")
            self._thread.join(0.02)

    def stop(self) -> None:
        """Stop serving; returns once the server's thread has ended."""
        self._server.should_exit = True
        self._thread.join()


@contextmanager
def console_beside(
    config: Config, address: ListenAddress | None, *, enabled: bool = True
) -> Iterator[ConsoleServer | None]:
    """The console served while the block runs, where ``address`` (else ``service.web``) says; else none."""
    address = address or config.service.web
    if address is None or not enabled:
        yield None
        return
    runtime = Runtime(config)
    try:
        check_can_sign_in(runtime)
        server = ConsoleServer(runtime, address)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        runtime.close()

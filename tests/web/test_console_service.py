"""``mailgate web`` and ``mailgate run --web`` (or ``service.web``): the console as a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from console_desk import PASSWORD, ConsoleDesk

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import httpx

MAILGATE = Path(sys.executable).parent / "mailgate"
WAIT_LIMIT = 30.0  # poll until the console answers; give up after this many seconds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_mailgate_run_serves_the_console_beside_the_service(desk: ConsoleDesk) -> None:
    (desk.root / "inbox").mkdir()
    config = desk.root / "mailgate.yaml"
    config.write_text(
        config.read_text()
        + "    connector: {type: folder, path: inbox}\n    poll_interval_seconds: 3600\n"
        + "service:\n  heartbeat_seconds: 1\n"
    )
    port = _free_port()
    service = subprocess.Popen(
        [str(MAILGATE), "--config", str(config), "run", "--web", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_LIMIT
        with httpx.Client() as client:
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    page = client.get(f"{base}/login")
                    break
                except httpx.TransportError:
                    assert service.poll() is None, service.communicate()
                    assert time.monotonic() < deadline, "the console never answered"
                    time.sleep(0.1)
            assert page.status_code == 200 and "Sign in" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            signed = client.post(f"{base}/login", data={"name": "root", "password": PASSWORD})
            assert signed.status_code == 303  # http: the Secure cookie is the browser's business
    finally:
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=WAIT_LIMIT)
    assert service.returncode == 0, (out, err)


def test_mailgate_web_serves_the_console_where_service_web_says(desk: ConsoleDesk) -> None:
    config = desk.root / "mailgate.yaml"
    port = _free_port()
    config.write_text(config.read_text() + f"service:\n  web: 127.0.0.1:{port}\n")
    console = subprocess.Popen(
        [str(MAILGATE), "--config", str(config), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_LIMIT
        with httpx.Client() as client:
            while True:
                try:
                    page = client.get(f"http://127.0.0.1:{port}/accounts")
                    break
                except httpx.TransportError:
                    assert console.poll() is None, console.communicate()
                    assert time.monotonic() < deadline, "the console never answered"
                    time.sleep(0.1)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/accounts"
    finally:
        console.send_signal(signal.SIGTERM)
        out, err = console.communicate(timeout=WAIT_LIMIT)
    assert console.returncode == 0, (out, err)
    assert f"mailgate console on http://127.0.0.1:{port}/" in err

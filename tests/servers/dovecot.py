"""A private Dovecot (IMAP + POP3, plain/STARTTLS and implicit TLS, XOAUTH2) started by the test suite.

``start_dovecot(base)`` writes a config into ``base``, starts ``dovecot -F -c CONF`` on free loopback
ports and waits until they accept connections. Users live in passwd-files (PLAIN scheme, one per
user), so ``add_user`` takes effect at once, without a restart. Messages are delivered with IMAP
APPEND as the user (imaplib), so the server assigns the UIDs.

XOAUTH2/OAUTHBEARER are served by Dovecot's own ``oauth2`` passdb, which asks a small loopback
HTTP token-introspection server run here (RFC 7662 style, ``POST token=...``); a test decides which
tokens are valid with ``grant_token``.

Running as root (as on CI), Dovecot's login processes run as ``dovenull`` and mail processes as
``dovecot``; as another user, every process runs as that user.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import imaplib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from .tls import make_test_certificates

START_TIMEOUT = 30.0


class DovecotError(RuntimeError):
    """Dovecot could not be started (the message includes the end of its log)."""


def dovecot_binary() -> str | None:
    """The path of the ``dovecot`` program, or None when it is not installed."""
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TokenIntrospection:
    """A loopback OAuth2 token-introspection endpoint: ``POST /introspect`` with ``token=...``."""

    def __init__(self) -> None:
        self.valid: dict[str, str] = {}  # token -> user name
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                token = (form.get("token") or [""])[0]
                user = owner.valid.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="token-introspection"
        )
        self.thread.daemon = True
        self.thread.start()

    @property
    def url(self) -> str:
        """Where Dovecot posts tokens."""
        return f"http://127.0.0.1:{self.port}/introspect"

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class Dovecot:
    """A running private Dovecot instance (see the module docstring)."""

    def __init__(self, base: Path, process: subprocess.Popen[bytes], ports: dict[str, int],
                 ca_cert: Path, introspection: TokenIntrospection) -> None:  # fmt: skip
        self.base = base
        self.process = process
        self.imap_port = ports["imap"]
        self.imaps_port = ports["imaps"]
        self.pop3_port = ports["pop3"]
        self.pop3s_port = ports["pop3s"]
        self.ca_cert = ca_cert
        self.host = "127.0.0.1"
        self.log_path = base / "dovecot.log"
        self.users_dir = base / "users"
        self.passwords: dict[str, str] = {}
        self._introspection = introspection
        self._lock = threading.Lock()

    def add_user(self, name: str, password: str) -> None:
        """Create a mail user (PLAIN password); Dovecot sees it at the next login.

        Each user has its own passwd-file (``users/NAME``): Dovecot re-reads a changed passwd-file
        at most once a second, but a file it has never opened is read at once.
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"unusable user name {name!r}")
        with self._lock:
            self.passwords[name] = password
            tmp = self.users_dir / f".{name}.tmp"
            tmp.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
            tmp.chmod(0o644)
            tmp.replace(self.users_dir / name)

    def grant_token(self, user: str, token: str) -> None:
        """Make ``token`` a valid OAuth2 bearer token for ``user`` (XOAUTH2 / OAUTHBEARER)."""
        self._introspection.valid[token] = user

    def revoke_token(self, token: str) -> None:
        """Make ``token`` invalid."""
        self._introspection.valid.pop(token, None)

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """An imaplib session logged in as ``user`` (plain port), logged out afterwards."""
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=30)
        try:
            client.login(user, self.passwords[user])
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver a message into ``folder`` (created if missing) with IMAP APPEND as ``user``."""
        with self.imap(user) as client:
            if folder.upper() != "INBOX":
                client.create(_quoted(folder))  # NO when it exists already: fine
            status, data = client.append(_quoted(folder), None, None, raw)
            if status != "OK":
                raise DovecotError(f"APPEND to {folder} as {user} failed: {data!r}")

    def count(self, user: str, folder: str = "INBOX") -> int:
        """How many messages ``folder`` holds (0 when the folder does not exist)."""
        with self.imap(user) as client:
            status, data = client.select(_quoted(folder), readonly=True)
            if status != "OK":
                return 0
            return int(data[0] or 0)

    def kick(self, user: str) -> None:
        """Drop every IMAP/POP3 connection of ``user`` (``doveadm kick``), as a server restart would."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        done = subprocess.run(
            [doveadm, "-c", str(self.base / "dovecot.conf"), "kick", user],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode != 0:
            raise DovecotError(f"doveadm kick {user} failed: {done.stderr.strip() or done.stdout.strip()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of Dovecot's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop Dovecot (the master we started, by its pid) and the introspection server."""
        if self.process.poll() is None:
            # SIGTERM to the master and, at once, to its children (its own process group): the master
            # alone would wait for idle login processes and take a second or more
            group = self.process.pid  # start_new_session: the group is ours alone
            _signal_group(group, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait(timeout=15)
        (self.base / "run" / "master.pid").unlink(missing_ok=True)
        self._introspection.stop()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _traversable(path: Path) -> None:
    """Dovecot's unprivileged processes must reach ``path``: check every parent (and fix ``path``)."""
    path.chmod(0o755)
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise DovecotError(
                f"{parent} is not traversable by other users (mode {parent.stat().st_mode & 0o777:o}); "
                "Dovecot's unprivileged processes could not reach its files. Use a base folder under /tmp."
            )


def _stop_when_parent_dies() -> None:
    """In the child: Linux sends it SIGTERM if the test process dies without stopping it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _config(
    base: Path, ports: dict[str, int], tls_cert: Path, tls_key: Path, introspection: str, extra: str
) -> str:
    if os.geteuid() == 0:
        internal_user, login_user, mail_ids = "dovecot", "dovenull", "uid=dovecot gid=dovecot"
    else:
        internal_user = login_user = getpass.getuser()
        mail_ids = f"uid={os.getuid()} gid={os.getgid()}"
    (base / "oauth2.conf.ext").write_text(
        f"introspection_mode = post\nintrospection_url = {introspection}\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        "force_introspection = yes\ntimeout_msecs = 10000\n"
    )
    return f"""\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{tls_cert}
ssl_key = <{tls_key}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
mail_location = maildir:{base}/mail/%u
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
mail_max_userip_connections = 200
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN {base}/users/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {base}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = {mail_ids} home={base}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports["pop3"]}
  }}
  inet_listener pop3s {{
    port = {ports["pop3s"]}
    ssl = yes
  }}
}}
{extra}
"""


def start_dovecot(base: Path, extra_config: str = "") -> Dovecot:
    """Write a config into ``base``, start Dovecot on free loopback ports, wait until they accept.

    ``extra_config`` is appended to the config, e.g. ``imap_capability = IMAP4rev1 IDLE`` to play
    an older server.
    """
    binary = dovecot_binary()
    if binary is None:
        raise DovecotError(
            "the dovecot program is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
        )
    base.mkdir(parents=True, exist_ok=True)
    _traversable(base)
    for sub in ("run", "state", "mail"):
        (base / sub).mkdir(exist_ok=True)
    (base / "run" / "master.pid").unlink(missing_ok=True)  # stale after a crash: "already running"
    if os.geteuid() == 0:
        shutil.chown(base / "mail", "dovecot", "dovecot")
    certs = make_test_certificates(base / "tls")
    introspection = TokenIntrospection()
    ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
    conf = base / "dovecot.conf"
    conf.write_text(
        _config(base, ports, certs.server_cert, certs.server_key, introspection.url, extra_config)
    )
    (base / "users").mkdir(exist_ok=True)
    (base / "users").chmod(0o755)
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)],
        preexec_fn=_stop_when_parent_dies, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    dovecot = Dovecot(base, process, ports, certs.ca_cert, introspection)
    deadline = time.monotonic() + START_TIMEOUT
    while not all(_accepts(port) for port in ports.values()):
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            introspection.stop()
            raise DovecotError(f"dovecot exited ({process.returncode}): {output}\n{dovecot.log_tail()}")
        if time.monotonic() > deadline:
            dovecot.stop()
            raise DovecotError(
                f"dovecot did not open its ports within {START_TIMEOUT:.0f} s\n{dovecot.log_tail()}"
            )
        time.sleep(0.05)
    return dovecot

"""Scale-out: 1, 2 and 4 ``mailgate run`` processes sharing 8 IMAP accounts on one PostgreSQL.

    python bench/bench_scale.py [N] [--workers 1,2,4] [--lease-seconds S] [--seed S]

Starts a private Dovecot (tests/servers/dovecot.py). For each worker count: a fresh PostgreSQL
database with the fixtures of bench/mailbox_mix.py, 8 fresh mailboxes, and N (default 2,000)
messages of the seeded mix appended round-robin to a ``Staging`` folder of each mailbox. The
workers (``mailgate run``, the console script) are started and left to spread the accounts;
once every account is held, every worker holds some and each holder has polled its accounts,
each mailbox's staging folder is moved into its INBOX in one ``UID MOVE`` (IDLE wakes the
holders) and the clock runs until the ledger holds every message. Then one worker that holds
accounts is SIGKILLed and the time until all of its accounts are held by the others is measured,
on the wall clock and on the database's (from the victim's last heartbeat to the last new
lease), with ``service.lease_seconds`` (default 30, the production default).

Prints, per worker count: messages/s (from the move to the last ledger entry), the ratio to one
worker, and the takeover time. It asserts nothing. Issue 14's target: 2 workers at least 1.7x one
worker on a 2-core machine.

Every process of the run shares this machine's cores (the workers and their parse workers,
PostgreSQL, Dovecot), so it also prints, from ``/proc``, how many cores were busy while the
messages were worked and by whom. With B cores busy for one worker out of C, more workers can be
at most C / B times as fast (the ceiling, printed beside the ratio): a second worker helps only
as far as one worker leaves the cores idle, waiting on round trips. Two ceilings are printed:
by the machine's busy cores (right on an otherwise idle machine: it counts the kernel's work for
the run, such as loopback networking and writeback), and by the run's own processes only (an
upper bound when other work shares the machine).
"""

from __future__ import annotations

import argparse
import imaplib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Dovecot harness of the test suite

from mailbox_mix import fixtures_yaml, mailbox_mix  # noqa: E402
from revision import write_bytecode  # noqa: E402
from servers.dovecot import Dovecot, start_dovecot  # noqa: E402

MAILGATE = Path(sys.executable).parent / "mailgate"
PASSWORD = "bench-secret"
ACCOUNTS = 8
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"  # a server where we may create databases


def stage(dovecot: Dovecot, users: list[str], raws: list[bytes]) -> None:
    """APPEND the messages round-robin to each user's ``Staging`` folder (one session per user)."""
    sessions = []
    for user in users:
        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=60)
        client.login(user, PASSWORD)
        client.create("Staging")
        sessions.append(client)
    for index, raw in enumerate(raws):
        status, data = sessions[index % len(users)].append("Staging", None, None, raw)
        if status != "OK":
            raise RuntimeError(f"APPEND failed: {data!r}")
    for client in sessions:
        client.logout()


def release(dovecot: Dovecot, users: list[str]) -> None:
    """Move every staged message into its INBOX, one UID MOVE per mailbox."""
    for user in users:
        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=60)
        client.login(user, PASSWORD)
        client.select("Staging")
        status, data = client.uid("MOVE", "1:*", "INBOX")
        if status != "OK":
            raise RuntimeError(f"UID MOVE failed: {data!r}")
        client.logout()


def write_desk(root: Path, dovecot: Dovecot, users: list[str], url: str, lease_seconds: float) -> Path:
    """The installation: 8 IMAP accounts, the fixtures loaded; returns its config file."""
    accounts = ""
    for number, user in enumerate(users):
        connector = (
            f"{{type: imap, host: {dovecot.host}, port: {dovecot.imap_port}, security: plain, "
            f"username: {user}, password: {PASSWORD}, timeout: 60}}"
        )
        accounts += (
            f"  - name: box{number}\n    address: box{number}@desk.example\n    connector: {connector}\n"
            "    poll_interval_seconds: 5\n"
        )
    config = root / "mailgate.yaml"
    config.write_text(
        f"database: {url}\nservice:\n  lease_seconds: {lease_seconds:g}\n  heartbeat_seconds: 5\n"
        f"accounts:\n{accounts}"
    )
    (root / "fixtures.yaml").write_text(fixtures_yaml())
    subprocess.run(
        [str(MAILGATE), "--config", str(config), "db", "load", "fixtures.yaml"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return config


def holders(url: str) -> dict[str, int]:
    """Each account's holding pid (unexpired leases only)."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT account, pid FROM accountlease WHERE holder IS NOT NULL AND expires_at > now()"
        )
        return {account: pid for account, pid in rows}


def watching(url: str) -> bool:
    """True once every account was polled by its holder since it took the lease (IDLE is armed)."""
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT count(*) FROM accountlease l JOIN accountstatus s ON s.account = l.account "
            "WHERE l.holder IS NOT NULL AND s.last_poll_at > l.acquired_at"
        ).fetchone()
        return bool(row and row[0] == ACCOUNTS)


def ledger_count(url: str) -> int:
    """How many messages the ledger holds."""
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM ledgerentry").fetchone()
        return int(row[0]) if row else 0


def cpu_ticks() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def process_table() -> dict[int, tuple[int, str, int]]:
    """Every running process: pid -> (parent pid, command name, CPU ticks of it and its reaped children)."""
    table: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        rest = text[text.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), name, sum(int(v) for v in rest[11:15]))
    return table


def run_ticks(roots: set[int], backends: set[int]) -> dict[str, int]:
    """CPU ticks so far of the run's processes: ``roots``' process trees and ``backends``, by role."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: dict[str, int] = {}
    for root in roots:
        stack = [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                name = table[pid][1]
                role = "mailgate" if name.startswith(("mailgate", "python")) else "dovecot"
                found[role] = found.get(role, 0) + table[pid][2]
            stack.extend(children.get(pid, ()))
    for pid in backends:
        if pid in table:
            found["postgres"] = found.get("postgres", 0) + table[pid][2]
    return found


def database_backends(url: str) -> set[int]:
    """The PostgreSQL server processes serving ``url``'s database, and the server's own writers."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "OR backend_type IN ('walwriter', 'checkpointer', 'background writer')"
        ).fetchall()
    return {int(row[0]) for row in rows}


class CpuUse:
    """How many cores the run's processes kept busy between ``start`` and ``stop``, by role.

    The roles: ``mailgate`` (the workers and their parse workers), ``dovecot`` (its process tree)
    and ``postgres`` (the backends serving the run's database, and the server's writers). The
    machine as a whole is measured too, so that a busy machine shows.
    """

    def start(self, roots: set[int], url: str) -> None:
        """Take the first reading."""
        self.roots, self.url = roots, url
        self.backends = database_backends(url)
        self.machine0 = cpu_ticks()
        self.before = run_ticks(roots, self.backends)

    def stop(self) -> None:
        """Take the second reading."""
        self.backends |= database_backends(self.url)
        busy, total = cpu_ticks()
        cores = os.cpu_count() or 1
        one_core = max(1, total - self.machine0[1]) / cores  # the window, in ticks of one core
        self.machine = (busy - self.machine0[0]) / one_core
        after = run_ticks(self.roots, self.backends)
        self.shares = {role: (ticks - self.before.get(role, 0)) / one_core for role, ticks in after.items()}
        self.busy = sum(self.shares.values())

    def describe(self) -> str:
        """E.g. ``the run kept 1.52 cores busy (mailgate 0.95, postgres 0.40, dovecot 0.17) of 1.90``."""
        parts = ", ".join(f"{role} {share:.2f}" for role, share in sorted(self.shares.items()))
        return f"the run kept {self.busy:.2f} cores busy ({parts}); the machine {self.machine:.2f}"


def wait(condition: object, what: str, limit: float = 600.0) -> None:
    """Poll ``condition()`` every 20 ms until true; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.02)


def run_workers(
    dovecot: Dovecot, base: Path, workers: int, messages: int, seed: int, lease_seconds: float, use: CpuUse
) -> tuple[float, float | None, float | None]:
    """One run: (messages/s, takeover wall seconds, takeover seconds on the database's clock).

    ``use`` is read from the move of the messages to the last ledger entry.
    """
    users = []
    for number in range(ACCOUNTS):
        user = f"scale{workers}x{number}"
        dovecot.add_user(user, PASSWORD)
        users.append(user)
    stage(dovecot, users, [m.raw for m in mailbox_mix(messages, seed=seed)])
    name = f"mailgate_scale_{os.getpid()}_{workers}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(POSTGRES, dbname=name)
    root = base / f"desk{workers}"
    root.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        config = write_desk(
            root, dovecot, users, "postgresql://postgres@127.0.0.1:5432/" + name, lease_seconds
        )
        for number in range(workers):
            with (root / f"worker{number}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen([str(MAILGATE), "--config", str(config), "run"], stderr=log, cwd=root)
                )
        pids = {p.pid for p in processes}

        def spread() -> bool:
            held = holders(url)
            return len(held) == ACCOUNTS and set(held.values()) == pids

        wait(spread, "the accounts to be spread over every worker", 120)
        wait(lambda: watching(url), "every holder to watch its accounts", 120)
        started = time.monotonic()
        use.start({p.pid for p in processes} | {dovecot.process.pid}, url)
        release(dovecot, users)
        wait(lambda: ledger_count(url) >= messages, "every message in the ledger")
        rate = messages / (time.monotonic() - started)
        use.stop()
        if workers < 2:
            return rate, None, None
        held = holders(url)
        victim = next(p for p in processes if p.pid in set(held.values()))
        lost = [account for account, pid in held.items() if pid == victim.pid]
        killed = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        others = pids - {victim.pid}
        wait(lambda: all(holders(url).get(a) in others for a in lost), "the takeover", 10 * lease_seconds)
        wall = time.monotonic() - killed
        with psycopg.connect(url) as db:
            row = db.execute(
                "SELECT extract(epoch FROM max(l.acquired_at) - max(w.beat_at)) "
                "FROM accountlease l, serviceworker w WHERE l.account = ANY(%s) AND w.pid = %s",
                (lost, victim.pid),
            ).fetchone()
        return rate, wall, float(row[0]) if row and row[0] is not None else None
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=120)
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    """Run the worker counts asked for and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("messages", nargs="?", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    write_bytecode(ROOT)  # as installed: no worker compiles this tree's modules (bench/revision.py)
    print(f"{args.messages} messages of the mix, {ACCOUNTS} IMAP accounts, one PostgreSQL")
    print(f"{os.cpu_count()} cores")
    print(f"lease_seconds {args.lease_seconds:g}")
    with tempfile.TemporaryDirectory(prefix="mailgate-scale-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder
        dovecot = start_dovecot(base / "dovecot")
        try:
            first: float | None = None
            ceilings: tuple[float, float] | None = None
            cores = os.cpu_count() or 1
            for workers in counts:
                use = CpuUse()
                rate, wall, by_database = run_workers(
                    dovecot, base, workers, args.messages, args.seed, args.lease_seconds, use
                )
                if first is None:
                    first = rate
                    ceilings = (cores / max(use.machine, 0.01), cores / max(use.busy, 0.01))
                plural = "s" if workers > 1 else " "
                line = f"{workers} worker{plural}: {rate:7.1f} messages/s, {rate / first:4.2f}x one"
                if workers > 1 and ceilings is not None:
                    by_machine, by_run = (min(float(workers), c) for c in ceilings)
                    line += f" (ceiling {by_machine:4.2f}x by the machine's busy cores"
                    line += f", {by_run:4.2f}x by the run's)"
                line += f"; {use.describe()}"
                if wall is not None:
                    line += f"; takeover after a SIGKILL: {wall:5.2f} s (wall clock)"
                    if by_database is not None:
                        line += f", {by_database:5.2f} s from the last heartbeat (database clock)"
                print(line, flush=True)
        finally:
            dovecot.stop()


if __name__ == "__main__":
    main()

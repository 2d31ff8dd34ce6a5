"""End to end: a real Dovecot, N seeded messages, ``mailgate run --once`` over IMAP and POP3.

    python bench/bench_e2e.py [N] [--seed S] [--big-mb MB] [--skip ceiling,pop3,pg,4n,big]
    python bench/bench_e2e.py [N] --against REVISION [--rounds R] [--skip pg]

Starts a private Dovecot (tests/servers/dovecot.py), loads fixtures (people and 1,000 calls, so
the replies' [CALL#n] tags hit real calls) into a fresh SQLite database per run, appends the
seeded mix of bench/mailbox_mix.py to a fresh mailbox, and times the whole ``mailgate run
--once`` subprocess (the console script), reading its peak RSS from ``wait4`` (through a tiny launcher,
so that the benchmark's own memory is not counted). Runs, in order:

- the ceiling: a bare imaplib loop over the same N messages (UID FETCH, UID STORE \\Deleted,
  EXPUNGE for each), also in a subprocess; and the same loop making mailgate's round trips (one
  UID FETCH, UID STORE and UID EXPUNGE per batch of messages);
- an empty mailbox (mailgate's start-up time and baseline memory);
- IMAP and POP3 over the N messages (messages/s, peak RSS, ratio to the ceiling);
- IMAP over the N messages into PostgreSQL (``--postgres``, a fresh database per run) and its
  ratio to IMAP into SQLite (issue 14's target: at least 0.90): ``--pg-rounds`` (default 3)
  pairs of runs, SQLite then PostgreSQL then PostgreSQL then SQLite and so on (neither always
  first), each pair's ratio and their median (the machine's speed drifts from one run to the
  next; a pair's two runs are close in time);
- IMAP over 4N messages (is peak memory flat in N?);
- one message with a ``--big-mb`` (default 25) MB attachment: peak RSS against its size.

``--against REVISION`` runs only IMAP into SQLite (and into PostgreSQL, unless skipped), for this
tree and for REVISION (installed once by bench/revision.py), alternating for ``--rounds`` rounds
on fresh mailboxes and databases, and prints each run, the medians and their ratios: messages/s,
and the CPU seconds per message of the service's process (start-up left out), which a busy
machine disturbs far less than the wall time.

It prints figures only; it asserts nothing. The target (issue 3): at least 600 messages/s over
IMAP into SQLite on a 2-core machine, peak memory flat in N, a 25 MB attachment costing a small
multiple of its size.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Dovecot harness of the test suite

from child_run import ChildRun, run_child  # noqa: E402
from mailbox_mix import big_attachment_message, describe, fixtures_yaml, mailbox_mix  # noqa: E402
from revision import build_revision, write_bytecode  # noqa: E402
from servers.dovecot import Dovecot, start_dovecot  # noqa: E402

MAILGATE = Path(sys.executable).parent / "mailgate"
PASSWORD = "bench-secret"
MB = 1024 * 1024
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"  # a server where we may create databases


def append_all(dovecot: Dovecot, user: str, raws: list[bytes]) -> None:
    """APPEND every message to the user's INBOX over one imaplib session (in order: oldest first)."""
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=60)
    try:
        client.login(user, PASSWORD)
        for raw in raws:
            status, data = client.append("INBOX", None, None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
    finally:
        client.logout()


def ceiling_loop(host: str, port: int, user: str, batch: int) -> int:
    """The bare imaplib loop; ``batch`` 1: UID FETCH, UID STORE \\Deleted, EXPUNGE for each message.

    With a larger ``batch``, the round trips mailgate makes: one UID FETCH for ``batch`` messages,
    then one UID STORE and one UID EXPUNGE for them.
    """
    client = imaplib.IMAP4(host, port, timeout=60)
    client.login(user, PASSWORD)
    client.select("INBOX")
    _, found = client.uid("SEARCH", "UNDELETED")
    uids = found[0].split()
    done = 0
    for first in range(0, len(uids), batch):
        which = b",".join(uids[first : first + batch])
        status, data = client.uid("FETCH", which, "(BODY.PEEK[])")
        bodies = [item for item in data if isinstance(item, tuple)]
        if status != "OK" or len(bodies) != len(uids[first : first + batch]):
            raise RuntimeError(f"UID FETCH {which!r} failed: {status} {len(bodies)} bodies")
        client.uid("STORE", which, "+FLAGS.SILENT", r"(\Deleted)")
        if batch == 1:
            client.expunge()
        else:
            client.uid("EXPUNGE", which)
        done += len(bodies)
    client.logout()
    return done


class Bench:
    """The Dovecot, a folder for the desks, and a counter for fresh user names."""

    def __init__(self, dovecot: Dovecot, base: Path, postgres: str = POSTGRES) -> None:
        self.dovecot = dovecot
        self.base = base
        self.postgres = postgres
        self.runs = 0

    def mailbox(self, raws: list[bytes]) -> str:
        """A fresh user whose INBOX holds ``raws``."""
        self.runs += 1
        user = f"bench{self.runs}"
        self.dovecot.add_user(user, PASSWORD)
        append_all(self.dovecot, user, raws)
        return user

    def desk(
        self, user: str, protocol: str, mailgate: Path = MAILGATE, database: str = "sqlite:///desk.sqlite"
    ) -> Path:
        """A fresh installation (config, database, fixtures loaded) reading ``user``'s mailbox."""
        root = self.base / f"desk-{user}-{protocol}"
        root.mkdir()
        d = self.dovecot
        port = d.imap_port if protocol == "imap" else d.pop3_port
        connector = (
            f"{{type: {protocol}, host: {d.host}, port: {port}, security: plain, "
            f"username: {user}, password: {PASSWORD}, timeout: 60}}"
        )
        (root / "mailgate.yaml").write_text(
            f"database: {database}\naccounts:\n"
            f"  - name: helpdesk\n    address: {DESK_ADDRESS}\n    connector: {connector}\n"
        )
        (root / "fixtures.yaml").write_text(fixtures_yaml())
        loaded = run_child([str(mailgate), "--config", "mailgate.yaml", "db", "load", "fixtures.yaml"], root)
        if loaded.status != 0:
            raise RuntimeError(f"mailgate db load failed: {loaded.stderr or loaded.stdout}")
        return root

    def run_mailgate(
        self, user: str, protocol: str, mailgate: Path = MAILGATE, postgres: bool = False
    ) -> tuple[ChildRun, str]:
        """``mailgate run --once`` over ``user``'s mailbox: the run and the ledger's outcome counts.

        Into a fresh SQLite file, or with ``postgres`` a fresh database of ``self.postgres``.
        """
        query = "SELECT outcome, count(*) FROM ledgerentry GROUP BY outcome ORDER BY 2 DESC"
        if not postgres:
            root = self.desk(user, protocol, mailgate)
            run = run_child([str(mailgate), "--config", "mailgate.yaml", "run", "--once"], root)
            with sqlite3.connect(root / "desk.sqlite") as db:
                rows = db.execute(query).fetchall()
            return run, ", ".join(f"{count} {outcome}" for outcome, count in rows) or "empty"
        name = f"mailgate_bench_{os.getpid()}_{self.runs}"
        with psycopg.connect(self.postgres, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url = psycopg.conninfo.make_conninfo(self.postgres, dbname=name)
        try:
            root = self.desk(user, protocol, mailgate, database=_sqlalchemy_url(url))
            run = run_child([str(mailgate), "--config", "mailgate.yaml", "run", "--once"], root)
            with psycopg.connect(url) as db:
                rows = db.execute(query).fetchall()
        finally:
            with psycopg.connect(self.postgres, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return run, ", ".join(f"{count} {outcome}" for outcome, count in rows) or "empty"

    def run_ceiling(self, user: str, batch: int) -> ChildRun:
        """The bare imaplib loop in a subprocess (started the same way as mailgate)."""
        d = self.dovecot
        argv = [sys.executable, __file__, "--ceiling-loop", d.host, str(d.imap_port), user, str(batch)]
        return run_child(argv, self.base)


DESK_ADDRESS = "helpdesk@example.com"


def _sqlalchemy_url(conninfo: str) -> str:
    """A libpq connection string as the URL mailgate's config takes."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = str(info.get("user", "postgres")) + (f":{info['password']}" if info.get("password") else "")
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    return f"postgresql://{auth}@{host}:{port}/{info['dbname']}"


def rate(count: int, seconds: float) -> float:
    """Messages per second."""
    return count / seconds if seconds > 0 else float("inf")


def report(label: str, count: int, run: ChildRun, left: int, ledger: str | None = None) -> None:
    """One line of figures (and the child's complaint if it failed)."""
    line = f"{label}: {count} messages in {run.seconds:.2f} s = {rate(count, run.seconds):,.0f} msg/s, "
    line += f"peak RSS {run.peak_rss / MB:.0f} MB"
    if run.tree_rss > run.peak_rss * 1.05:
        line += f" (with its parse worker {run.tree_rss / MB:.0f} MB)"
    if run.cpu_own:
        line += f", CPU {run.cpu_own:.2f} s (its children {run.cpu_children:.2f} s)"
    line += f", left in mailbox {left}"
    if ledger is not None:
        line += f"; ledger: {ledger}"
    print(line, flush=True)
    if run.status != 0:
        print(f"  (exit status {run.status}: {(run.stderr or run.stdout)[-800:]})", flush=True)


def main() -> None:
    """Run every scenario and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--big-mb", type=float, default=25.0)
    parser.add_argument(
        "--skip", default="", help="comma-separated scenarios to skip: ceiling,pop3,pg,4n,big"
    )
    parser.add_argument("--postgres", default=POSTGRES, help=f"a PostgreSQL server URL (default {POSTGRES})")
    parser.add_argument("--against", metavar="REVISION", help="compare this tree with REVISION (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the comparison (default 3)")
    parser.add_argument(
        "--pg-rounds", type=int, default=3, help="pairs of runs into SQLite and PostgreSQL (default 3)"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    count = args.count
    write_bytecode(ROOT)  # as installed: no start-up compiles this tree's modules (see there)
    other = build_revision(ROOT, args.against) if args.against else None
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder
        dovecot = start_dovecot(base / "dovecot")
        try:
            bench = Bench(dovecot, base, args.postgres)
            if other is None:
                scenarios(bench, count, args.seed, args.big_mb, skip, args.pg_rounds)
            else:
                compare(
                    bench,
                    count,
                    args.seed,
                    (_this_tree(), MAILGATE),
                    (other.revision, other.mailgate),
                    args.rounds,
                    skip,
                )
        finally:
            dovecot.stop()


def _this_tree() -> str:
    """This tree's name in the comparison: its commit, marked when it has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return f"this tree ({commit}{'+changes' if changed.stdout.strip() else ''})"


def compare(
    bench: Bench,
    count: int,
    seed: int,
    this: tuple[str, Path],
    other: tuple[str, Path],
    rounds: int,
    skip: set[str],
) -> None:
    """This tree against another revision, alternating, on fresh mailboxes and databases (see above)."""
    mix = mailbox_mix(count, seed)
    raws = [m.raw for m in mix]
    print(f"mix (seed {seed}): {describe(mix)}", flush=True)
    sides = (this, other)
    startup = {}
    for name, mailgate in sides:
        empty, _ = bench.run_mailgate(bench.mailbox([]), "imap", mailgate)
        startup[name] = empty
        print(f"start-up of {name}: {empty.seconds:.2f} s, CPU {empty.cpu_own:.2f} s", flush=True)
    databases = [("SQLite", False)] + ([] if "pg" in skip else [("PostgreSQL", True)])
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(rounds):
        for name, mailgate in sides if round_ % 2 == 0 else sides[::-1]:  # ABBA: neither always first
            for database, postgres in databases:
                user = bench.mailbox(raws)
                run, ledger = bench.run_mailgate(user, "imap", mailgate, postgres)
                report(
                    f"round {round_ + 1}, {name}, IMAP into {database}",
                    count,
                    run,
                    bench.dovecot.count(user),
                    ledger,
                )
                service_cpu = (run.cpu_own - startup[name].cpu_own) / count * 1000
                figures.setdefault((name, database), []).append((rate(count, run.seconds), service_cpu))
    for database, _ in databases:
        (a, b) = [figures[(name, database)] for name, _ in sides]
        rate_a, rate_b = (statistics.median(r for r, _ in runs) for runs in (a, b))
        cpu_a, cpu_b = (statistics.median(c for _, c in runs) for runs in (a, b))
        print(
            f"IMAP into {database}, {this[0]} / {other[0]}, medians of {rounds}: "
            f"{rate_a:,.0f} / {rate_b:,.0f} msg/s = {rate_a / rate_b:.2f}; "
            f"service CPU {cpu_a:.3f} / {cpu_b:.3f} ms per message = {cpu_a / cpu_b:.2f}",
            flush=True,
        )


def scenarios(bench: Bench, count: int, seed: int, big_mb: float, skip: set[str], pg_rounds: int = 3) -> None:
    """The runs described in the module docstring, in order."""
    mix = mailbox_mix(count, seed)
    raws = [m.raw for m in mix]
    print(f"mix (seed {seed}): {describe(mix)}", flush=True)
    d = bench.dovecot

    from engine.service.watcher import BATCH_MESSAGES  # not at the top: the ceiling's child stays bare

    ceilings: list[tuple[str, float]] = []
    if "ceiling" not in skip:
        for batch, label in ((1, "each message"), (BATCH_MESSAGES, f"{BATCH_MESSAGES} at a time")):
            user = bench.mailbox(raws)
            run = bench.run_ceiling(user, batch)
            what = f"ceiling, {label}: imaplib UID FETCH + UID STORE \\Deleted + " + (
                "EXPUNGE" if batch == 1 else "UID EXPUNGE"
            )
            report(what, count, run, d.count(user))
            ceilings.append((label, rate(count, run.seconds)))

    empty, _ = bench.run_mailgate(bench.mailbox([]), "imap")
    print(
        f"start-up: mailgate run --once over an empty mailbox: {empty.seconds:.2f} s, "
        f"peak RSS {empty.peak_rss / MB:.0f} MB",
        flush=True,
    )

    imap_peak: tuple[int, int] | None = None
    for protocol in ("imap", "pop3"):
        if protocol in skip:
            continue
        user = bench.mailbox(raws)
        run, ledger = bench.run_mailgate(user, protocol)
        report(f"{protocol.upper()}: mailgate run --once", count, run, d.count(user), ledger)
        steady = rate(count, run.seconds - empty.seconds)
        line = f"  {steady:,.0f} msg/s after start-up"
        for label, ceiling in ceilings:
            line += f"; ratio to the ceiling ({label}) {rate(count, run.seconds) / ceiling:.2f}"
        print(line, flush=True)
        if protocol == "imap":
            imap_peak = (run.peak_rss, max(run.tree_rss, run.peak_rss))

    if "pg" not in skip:
        postgres_against_sqlite(bench, raws, pg_rounds)

    if "4n" not in skip:
        user = bench.mailbox([m.raw for m in mailbox_mix(4 * count, seed)])
        run, ledger = bench.run_mailgate(user, "imap")
        report("IMAP at 4N: mailgate run --once", 4 * count, run, d.count(user), ledger)
        print(f"  {rate(4 * count, run.seconds - empty.seconds):,.0f} msg/s after start-up", flush=True)
        if imap_peak:
            line = f"  peak RSS at 4N / at N: {run.peak_rss / imap_peak[0]:.2f}"
            line += f" (with the parse worker: {run.tree_rss / imap_peak[1]:.2f})"
            print(line, flush=True)

    if "big" not in skip:
        size = int(big_mb * MB)
        raw = big_attachment_message(size)
        user = bench.mailbox([raw])
        run, ledger = bench.run_mailgate(user, "imap")
        report(
            f"big attachment ({size / MB:.0f} MB, {len(raw) / MB:.1f} MB on the wire)",
            1,
            run,
            d.count(user),
            ledger,
        )
        above = run.peak_rss - empty.peak_rss
        print(
            f"  peak RSS {run.peak_rss / MB:.0f} MB = {above / MB:.0f} MB above the empty run "
            f"= {above / size:.1f} x the attachment",
            flush=True,
        )


def postgres_against_sqlite(bench: Bench, raws: list[bytes], rounds: int) -> None:
    """IMAP into PostgreSQL and into SQLite, in pairs of runs close in time: each ratio and the median."""
    count, d = len(raws), bench.dovecot
    ratios: list[float] = []
    for round_ in range(rounds):
        rates: dict[bool, float] = {}
        for postgres in (False, True) if round_ % 2 == 0 else (True, False):
            user = bench.mailbox(raws)
            run, ledger = bench.run_mailgate(user, "imap", postgres=postgres)
            database = "PostgreSQL" if postgres else "SQLite"
            report(f"round {round_ + 1}, IMAP into {database}", count, run, d.count(user), ledger)
            rates[postgres] = rate(count, run.seconds)
        ratios.append(rates[True] / rates[False])
        print(f"  PostgreSQL / SQLite: {ratios[-1]:.2f}", flush=True)
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    median = statistics.median(ratios)
    print(f"IMAP into PostgreSQL / into SQLite, median of {rounds} pairs: {median:.2f} ({shown})", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--ceiling-loop":
        print(ceiling_loop(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
    else:
        main()

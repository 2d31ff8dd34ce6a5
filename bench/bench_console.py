"""Times the admin console's pages on a ledger of 1,000,000 messages against the 100 ms target.

Run: ``python bench/bench_console.py [--rows N] [--database URL]`` (default: a fresh SQLite file
in a temporary folder; a database that has ledger entries already is used as it is, so a
PostgreSQL database filled once can be timed again). It fills the ledger with N
messages spread over a year (30 accounts' worth of senders, outcomes and rules in the proportions
of a busy desk, a stored trace on every 50th), then asks the console in-process (Starlette's
TestClient, so no network: the server's time, templates included) for each page 15 times after
one warm-up, and prints the median and the slowest.

Pages: the Messages page (newest 50), its next page by keyset, searches by subject (a common
word, then one no message has: a whole 50,000-entry window is read), by sender, outcome, rule, item number
and date, one message's page (its trace unpacked), and the Accounts page (today's outcomes).

No assertions: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import warnings
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402

from engine.config.model import load_config  # noqa: E402
from engine.rules.explain import Explanation  # noqa: E402
from engine.rules.subject import ParsedSubject  # noqa: E402
from engine.rules.vocabulary import Intent  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.storage.console import save_admin  # noqa: E402
from engine.storage.models import LedgerEntry  # noqa: E402
from engine.web.app import create_app  # noqa: E402
from engine.web.passwords import hash_password  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TARGET_MS = 100.0
RUNS = 15
OUTCOMES = [("logged", "log_new_call", 40), ("updated", "update_call", 35), ("closed", "close_call", 8)]
OUTCOMES += [("refused", "close_insufficient_permission", 5), ("ignored", "summary_from_unknown_sender", 5)]
OUTCOMES += [("summary", "summary_of_calls", 4), ("quarantined", None, 2), ("approved", "approve_task", 1)]
WORDS = [
    "printer",
    "scanner",
    "laptop",
    "password",
    "vpn",
    "monitor",
    "mouse",
    "keyboard",
    "email",
    "access",
    "phone",
    "badge",
]
CONFIG = "database: {url}\naccounts:\n  - {{name: helpdesk, address: helpdesk@example.com}}\n"


def fill(runtime: Runtime, rows: int) -> None:
    """Write ``rows`` ledger entries, oldest first, in batches."""
    chooser = random.Random(15)
    weights = [w for _, _, w in OUTCOMES]
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / rows
    tried = [(f"rule_{n}", False, f"fails: intent == 'rule_{n}'") for n in range(40)]
    explained = Explanation("desk0", "default", "RE: [CALL#1000] the printer", facts=dict.fromkeys(WORDS, 1))
    explained.parsed = ParsedSubject(Intent("update_call"), 1000, True, "[CALL#1000]", (), ())
    explained.tried = [*tried, ("update_call", True, "")]
    explained.rule, explained.outcome = "update_call", "updated"
    trace = zlib.compress(json.dumps(explained.to_json()).encode(), 1)
    batch: list[dict[str, object]] = []
    statement = insert(LedgerEntry)
    with runtime.engine.begin() as connection:
        for n in range(rows):
            outcome, rule, _ = chooser.choices(OUTCOMES, weights)[0]
            word = chooser.choice(WORDS)
            batch.append(
                {
                    "account": f"desk{n % 30}",
                    "message_key": f"m{n}@bench.example",
                    "message_id": f"m{n}@bench.example",
                    "outcome": outcome,
                    "rule": rule,
                    "entity": "call" if outcome != "quarantined" else None,
                    "number": 1000 + n // 3 if outcome != "quarantined" else None,
                    "detail": "{}",
                    "processed_at": start + step * n,
                    "fingerprint": None,
                    "sender": f"user{chooser.randrange(20_000)}@example.com",
                    "subject": f"RE: [CALL#{1000 + n // 3}] the {word} is broken again (case {n})",
                    "trace": trace if n % 50 == 0 else None,
                }
            )
            if len(batch) == 10_000:
                connection.execute(statement, batch)
                batch.clear()
        if batch:
            connection.execute(statement, batch)


def timed(client: TestClient, url: str) -> tuple[float, float]:
    """(median, slowest) milliseconds for GET ``url`` after one warm-up request."""
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.status_code, answer.text[-500:])
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    """Fill, then time each page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", help="a SQLAlchemy URL of an empty database (default: SQLite)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-console-"))
    url = args.database or f"sqlite:///{folder / 'mailgate.sqlite'}"
    (folder / "mailgate.yaml").write_text(CONFIG.format(url=url))
    runtime = Runtime(load_config(folder / "mailgate.yaml"))
    with runtime.engine.connect() as connection:
        present = connection.execute(select(func.count()).select_from(LedgerEntry)).scalar()
    if present:
        print(f"using the {present:,} ledger rows already in {url}")
        args.rows = int(present)
    else:
        started = time.perf_counter()
        fill(runtime, args.rows)
        print(f"filled {args.rows:,} ledger rows in {time.perf_counter() - started:.1f} s ({url})")
        if runtime.engine.dialect.name == "postgresql":  # as autovacuum would soon after such a load
            with runtime.engine.begin() as connection:
                connection.execute(text("ANALYZE ledgerentry"))
    save_admin(runtime.engine, "bench", hash_password("bench password"), "admin")
    middle = args.rows // 2 // 50 * 50 + 1  # an entry with a stored trace, half-way through
    day = (datetime.now(UTC) - timedelta(days=100)).date().isoformat()
    pages = {
        "messages page (newest 50)": "/messages",
        "messages, an older page (keyset)": f"/messages?before={args.rows // 2}",
        "search: subject 'printer'": "/messages?subject=printer",
        "search: subject nobody wrote (one window)": "/messages?subject=zebra",
        "search: sender": "/messages?sender=user4242@example.com",
        "search: outcome approved": "/messages?outcome=approved",
        "search: rule close_call": "/messages?rule=close_call",
        "search: item number": f"/messages?number={1000 + args.rows // 6}",
        "search: date": f"/messages?date={day}",
        "search: date + outcome quarantined": f"/messages?date={day}&outcome=quarantined",
        "one message's page (with its trace)": f"/messages/{middle}",
        "accounts page (today's outcomes)": "/accounts",
    }
    with TestClient(create_app(runtime), base_url="https://bench") as client:
        client.post("/login", data={"name": "bench", "password": "bench password"})
        print(f"{'page':<44} {'median':>9} {'slowest':>9}  target {TARGET_MS:.0f} ms")
        for name, path in pages.items():
            median, slowest = timed(client, path)
            verdict = "ok" if median < TARGET_MS else "OVER"
            print(f"{name:<44} {median:>7.1f}ms {slowest:>7.1f}ms  {verdict}")
    runtime.close()


if __name__ == "__main__":
    main()

"""Throughput of ``mailgate process`` and the medians of subject parsing and deciding.

    python bench/bench_pipeline.py [N]

Builds a throw-away installation (SQLite, default pack, 1,000 calls), runs N seeded messages
(a mix of new calls, updates, closes, approvals and summaries) through the pipeline, and prints
messages per second. Then it times, per message, the subject parse and the decision (facts
from the database plus rule selection) and prints their medians against the targets
(subject parse 50 µs, decision 200 µs). It prints figures only; it asserts nothing.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from sqlmodel import Session

from engine.config.model import load_config
from engine.mail.message import parse_message
from engine.pipeline import process_message
from engine.rules.gather import gather_facts
from engine.rules.subject import parse_subject
from engine.runtime import Runtime
from engine.storage.fixtures import load_fixtures

SUBJECT_TARGET_US = 50.0
DECIDE_TARGET_US = 200.0


def _fixtures(path: Path, calls: int) -> None:
    lines = [
        "groups: [{name: Desk}]",
        "people:",
        "  - {email: ada@example.com, name: Ada, user: true}",
        "  - {email: grace@example.com, name: Grace, user: false, analyst: true, groups: [Desk]}",
        "  - {email: fran@example.com, name: Fran, user: false, analyst: true}",
        "requests: [{number: 1, status: open, user: ada@example.com, assigned_analyst: grace@example.com}]",
        "tasks:",
    ]
    lines += [
        f"  - {{number: {n}, kind: approval, status: open, request: 1, approver: fran@example.com}}"
        for n in range(1, 201)
    ]
    lines.append("calls:")
    lines += [
        f"  - {{number: {n}, status: open, user: ada@example.com, assigned_analyst: grace@example.com}}"
        for n in range(1, calls + 1)
    ]
    path.write_text("\n".join(lines) + "\n")


def _mails(count: int, calls: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(count):
        roll = rng.random()
        sender = "ada@example.com"
        if roll < 0.55:
            subject = f"Problem {i}: printer on floor {rng.randint(1, 9)} jams"
        elif roll < 0.85:
            subject = f"RE: [CALL#{rng.randint(1, calls)}] printer"
        elif roll < 0.93:
            subject, sender = f"[CLOSE#{rng.randint(1, calls)}] done", "grace@example.com"
        elif roll < 0.98:
            subject, sender = f"[APPROVE#{rng.randint(1, 200)}]", "fran@example.com"
        else:
            subject, sender = "[MyCalls]", "grace@example.com"
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, "helpdesk@example.com", subject
        msg["Message-ID"] = f"<bench-{seed}-{i}@example.com>"
        msg.set_content(
            "Hello,\n\n" + "Some details about the problem. " * rng.randint(5, 40) + "\n\nThanks\n"
        )
        out.append(msg.as_bytes())
    return out


def main() -> None:
    """Run the benchmark and print its figures."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    calls = 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mailgate.yaml").write_text(
            "database: sqlite:///bench.sqlite\naccounts:\n  - {name: helpdesk, rule_pack: default}\n"
        )
        _fixtures(root / "fixtures.yaml", calls)
        runtime = Runtime(load_config(root / "mailgate.yaml"))
        load_fixtures(runtime.engine, root / "fixtures.yaml")
        account = runtime.config.accounts[0]
        pack = runtime.pack_for(account)
        mails = _mails(count, calls)

        started = time.perf_counter()
        outcomes: dict[str, int] = {}
        for raw in mails:
            result = process_message(runtime, account, raw, "bench")
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        elapsed = time.perf_counter() - started
        print(f"process: {count} messages in {elapsed:.2f} s = {count / elapsed:,.0f} messages/s  {outcomes}")

        parsed = [parse_message(raw) for raw in _mails(500, calls, seed=11)]
        subjects = [m.subject for m in parsed]
        parse_times = []
        for subject in subjects * 20:
            t0 = time.perf_counter_ns()
            parse_subject(subject, pack.keywords)
            parse_times.append(time.perf_counter_ns() - t0)
        parse_us = statistics.median(parse_times) / 1000
        print(
            f"subject parse: median {parse_us:.1f} µs "
            f"(target {SUBJECT_TARGET_US:.0f} µs, ratio {parse_us / SUBJECT_TARGET_US:.2f})"
        )

        decide_times, rule_times = [], []
        with Session(runtime.engine) as session:
            for message in parsed * 4:
                subject = parse_subject(message.subject, pack.keywords)
                t0 = time.perf_counter_ns()
                situation = gather_facts(session, runtime.config, account, message, subject)
                t1 = time.perf_counter_ns()
                pack.decide(situation.facts)
                t2 = time.perf_counter_ns()
                decide_times.append(t2 - t0)
                rule_times.append(t2 - t1)
            session.rollback()
        decide_us = statistics.median(decide_times) / 1000
        rules_us = statistics.median(rule_times) / 1000
        print(
            f"decision (facts from the database + rule selection): median {decide_us:.1f} µs "
            f"(target {DECIDE_TARGET_US:.0f} µs, ratio {decide_us / DECIDE_TARGET_US:.2f}); "
            f"rule selection alone: median {rules_us:.1f} µs"
        )
        runtime.close()


if __name__ == "__main__":
    main()

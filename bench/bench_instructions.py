"""Instructions, not seconds: what the service and its parse worker execute per message (valgrind).

    python bench/bench_instructions.py [N] [--seed S] [--against REVISION]

On a shared machine the wall and CPU times of bench_e2e.py move by a third from one run to the
next, even for the same tree, so a change of a few per cent cannot be seen in them. The number of
instructions a process executes does not move: callgrind counts them whatever else the machine
does. It shows what a change costs in CPU work, though not what it costs in waits, in writes to
the disk, in the kernel or in cache misses; bench_e2e.py stays the measure of throughput.

Counted for this tree and, with ``--against``, for REVISION (installed once by bench/revision.py),
each process under ``valgrind --tool=callgrind``:

- the service: ``mailgate run --once`` over N messages of the mix (bench/mailbox_mix.py) in a
  fresh mailbox of a private Dovecot, into a fresh SQLite database; its parse worker runs outside
  valgrind. Its start-up (a run over an empty mailbox) is subtracted;
- the parse worker: started by itself and fed the same N messages in requests of 50, as the
  service sends them: keeping the originals in a file and reading the subjects with the default
  keywords where the tree's worker does (``engine.mail.parse_worker``); a revision whose worker is
  ``engine.parse_worker`` (before issue 11) is sent what that one reads, the raw messages alone.

It prints instructions per message of each and of both, and with ``--against`` their ratios. It
asserts nothing. Valgrind makes each run 20 to 50 times slower, so N defaults to 500 (about four
minutes for two trees).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Dovecot harness of the test suite

from bench_e2e import MAILGATE, Bench, _this_tree  # noqa: E402
from mailbox_mix import describe, mailbox_mix  # noqa: E402
from revision import build_revision, write_bytecode  # noqa: E402
from servers.dovecot import start_dovecot  # noqa: E402

BATCH = 50  # messages in one request to the parse worker, as the service sends them

# run by the tree's own interpreter: its requests, in its worker's protocol, then its worker
_WORKER_DRIVER = """
import os, subprocess, sys, tempfile
bench, out = sys.argv[1], sys.argv[4]
count, seed, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
sys.path.insert(0, bench)
from mailbox_mix import mailbox_mix
raws = [m.raw for m in mailbox_mix(count, seed)]
batches = [raws[i : i + batch] for i in range(0, count, batch)]
ours = frozenset({"helpdesk@example.com"})
folder = tempfile.mkdtemp(prefix="mailgate-bench-worker-")
try:
    from engine.mail.parse_worker import write_frame
    from engine.rules.subject import default_keywords
    module = "engine.mail.parse_worker"
    keep = (os.path.join(folder, "desk.originals.sqlite"), "helpdesk")
    requests = [(ours, 30.0, keep, some, default_keywords()) for some in batches]
except ImportError:
    from engine.parse_worker import write_frame
    module = "engine.parse_worker"
    requests = [(ours, some) for some in batches]
path = os.path.join(folder, "requests")
with open(path, "wb") as stream:
    for request in requests:
        write_frame(stream, request)
with open(path, "rb") as stream:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", module],
        stdin=stream, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
if done.returncode:
    print(done.stderr.decode()[-2000:], file=sys.stderr)
sys.exit(done.returncode)
"""


def instructions(dump: Path) -> int:
    """The instructions a callgrind dump counted (its ``summary:`` line)."""
    found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
    if found is None:
        raise SystemExit(f"bench: no count in {dump}")
    return int(found.group(1))


def service_instructions(bench: Bench, raws: list[bytes], mailgate: Path, out: Path) -> int:
    """Instructions of ``mailgate run --once`` over ``raws`` in a fresh mailbox and database."""
    user = bench.mailbox(raws)
    root = bench.desk(user, "imap", mailgate)
    python = mailgate.parent / "python"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(python), str(mailgate)]
    done = subprocess.run(
        [*argv, "--config", "mailgate.yaml", "run", "--once"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: mailgate run failed: {done.stderr[-2000:]}")
    if bench.dovecot.count(user) != 0:
        raise SystemExit("bench: mailgate left messages in the mailbox")
    return instructions(out)


def worker_instructions(mailgate: Path, count: int, seed: int, out: Path) -> int:
    """Instructions of the tree's parse worker over ``count`` messages of the mix, in requests of 50."""
    python = mailgate.parent / "python"
    bench = str(ROOT / "bench")
    driver = [str(python), "-c", _WORKER_DRIVER, bench, str(count), str(seed), str(out), str(BATCH)]
    # from a folder of its own: with ``-c`` and ``-m`` the working folder is the first place Python
    # imports from, and here that would be this tree's ``engine`` for every revision
    done = subprocess.run(driver, capture_output=True, text=True, cwd=out.parent)
    if done.returncode != 0:
        raise SystemExit(f"bench: the parse worker failed: {done.stderr[-2000:]}")
    return instructions(out)


def count_tree(
    bench: Bench, name: str, mailgate: Path, count: int, seed: int, work: Path
) -> tuple[float, float]:
    """Instructions per message of the service (start-up left out) and of the parse worker."""
    raws = [m.raw for m in mailbox_mix(count, seed)]
    tag = re.sub(r"\W+", "-", name)
    empty = service_instructions(bench, [], mailgate, work / f"{tag}.empty.cg")
    full = service_instructions(bench, raws, mailgate, work / f"{tag}.service.cg")
    worker = worker_instructions(mailgate, count, seed, work / f"{tag}.worker.cg")
    service, parsing = (full - empty) / count, worker / count
    print(
        f"{name}: the service {service:,.0f} instructions a message (start-up {empty / 1e6:,.0f} M), "
        f"its parse worker {parsing:,.0f}, both {service + parsing:,.0f}",
        flush=True,
    )
    return service, parsing


def main() -> None:
    """Count this tree (and REVISION) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--against", metavar="REVISION", help="count REVISION too, and print the ratios")
    args = parser.parse_args()
    write_bytecode(ROOT)
    other = build_revision(ROOT, args.against) if args.against else None
    print(f"mix (seed {args.seed}): {describe(mailbox_mix(args.count, args.seed))}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder
        dovecot = start_dovecot(base / "dovecot")
        try:
            bench = Bench(dovecot, base)
            this = count_tree(bench, _this_tree(), MAILGATE, args.count, args.seed, base)
            if other is not None:
                that = count_tree(bench, other.revision, other.mailgate, args.count, args.seed, base)
                ratios = [a / b for a, b in zip((*this, sum(this)), (*that, sum(that)), strict=True)]
                print(
                    f"this tree / {other.revision}: the service {ratios[0]:.3f}, its parse worker "
                    f"{ratios[1]:.3f}, both {ratios[2]:.3f}",
                    flush=True,
                )
        finally:
            dovecot.stop()


if __name__ == "__main__":
    main()

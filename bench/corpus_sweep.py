"""Run parse_message over every mail file under the given folders and report what became of each.

Usage: python bench/corpus_sweep.py DIR [DIR...] [--problems]

Mail files are *.eml files, and files without an extension inside a folder named "emails" or "mails".
Each file prints as ``ok`` or ``quarantined: <reason>``; anything else is a crash and is listed too
(the exit status is then 1). Totals, reasons and parse throughput follow.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.errors import MailError
from engine.mail.message import parse_message

_MAIL_FOLDERS = frozenset({"emails", "mails"})


def mail_files(root: Path) -> Iterator[Path]:
    """Every mail file under root, sorted by path."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        in_mail_folder = any(part.lower() in _MAIL_FOLDERS for part in path.parent.parts)
        if path.suffix.lower() == ".eml" or (not path.suffix and in_mail_folder):
            yield path


def main(argv: list[str]) -> int:
    """Sweep the folders named in argv; returns the exit status."""
    show_problems = "--problems" in argv
    roots = [Path(a) for a in argv if not a.startswith("--")]
    if not roots:
        print(__doc__)
        return 2
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    crashes: list[str] = []
    parse_seconds = 0.0
    parsed_bytes = 0
    for root in roots:
        if not root.exists():
            print(f"{root}: no such folder", file=sys.stderr)
            return 2
        for path in mail_files(root):
            raw = path.read_bytes()
            started = time.perf_counter()
            try:
                message = parse_message(raw)
            except MailError as exc:
                print(f"{path}: quarantined: {exc.reason}")
                outcomes["quarantined"] += 1
                reasons[exc.reason.split(" (")[0].split(":")[0]] += 1
            except Exception:
                print(f"{path}: CRASH\n{traceback.format_exc()}")
                outcomes["crashed"] += 1
                crashes.append(str(path))
            else:
                flags = [f"{len(message.problems)} problems"] if message.problems else []
                if message.is_bounce:
                    flags.append(f"bounce {message.bounce_code}")
                elif message.auto_submitted:
                    flags.append("auto")
                print(f"{path}: ok" + (f" ({', '.join(flags)})" if flags else ""))
                if show_problems:
                    for problem in message.problems:
                        print(f"    - {problem}")
                outcomes["ok"] += 1
            finally:
                parse_seconds += time.perf_counter() - started
                parsed_bytes += len(raw)
    total = sum(outcomes.values())
    print()
    print(f"files: {total}  ok: {outcomes['ok']}  quarantined: {outcomes['quarantined']}", end="")
    print(f"  crashed: {outcomes['crashed']}")
    for reason, count in reasons.most_common():
        print(f"  {count:5d}  {reason}")
    if parse_seconds > 0:
        rate = total / parse_seconds
        print(f"parse throughput: {rate:.0f} messages/s, {parsed_bytes / parse_seconds / 1e6:.1f} MB/s")
    for crash in crashes:
        print(f"CRASHED: {crash}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

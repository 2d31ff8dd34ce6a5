"""Times ``parse_subject`` on realistic subjects against the 50 µs per-subject target.

Run: ``python bench/bench_subject.py``. Prints the median time per parse for each subject and
overall, and the ratio to the target. No assertions: this is a measurement, not a test.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.rules.subject import compile_keywords, default_keywords, parse_subject

TARGET_MICROSECONDS = 50.0
REPEATS = 7
PARSES_PER_REPEAT = 2_000

SUBJECTS = [
    "Printer on the 3rd floor is not printing",
    "Re: [CALL#104233] Outlook keeps asking for my password",
    "AW: WG: Re[2]: [CLOSE#98812] VPN fixed, thanks",
    "RE: Call No. 4711 - laptop still not working after the Windows update",
    "[APPROVE#5521]",
    "Fwd: Request 20931 new monitor for the reception desk (urgent!)",
    "[MyCalls]",
    "Re: Re: Task/Approval 3310: please confirm budget for Q3",
    "Out of office: back on 12 March, in urgent cases call 555-0100",
    "Re: Meeting notes 2024-05-14 / action items [REJECT#77] see attachment",
]


def median_microseconds(subject: str) -> float:
    """Median over REPEATS runs of the time per parse of ``subject``, in microseconds."""
    runs = timeit.repeat(lambda: parse_subject(subject), number=PARSES_PER_REPEAT, repeat=REPEATS)
    return statistics.median(runs) / PARSES_PER_REPEAT * 1e6


def main() -> None:
    """Warm the parser cache, time every subject, print the figures."""
    compile_keywords(default_keywords())
    timings = []
    for subject in SUBJECTS:
        microseconds = median_microseconds(subject)
        timings.append(microseconds)
        result = parse_subject(subject)
        print(f"{microseconds:7.1f} µs  {result.intent:<14} {result.number!s:>7}  {subject[:60]}")
    overall = statistics.median(timings)
    print(
        f"\nmedian per subject: {overall:.1f} µs (target {TARGET_MICROSECONDS:.0f} µs, "
        f"ratio {overall / TARGET_MICROSECONDS:.2f}); slowest {max(timings):.1f} µs"
    )


if __name__ == "__main__":
    main()

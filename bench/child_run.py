"""A timed child process: its wall time and peak memory, measured from a tiny launcher."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    """One timed subprocess: wall time, CPU time, peak resident memory, exit status and output."""

    seconds: float
    peak_rss: int  # bytes: the process's own peak (wait4)
    tree_rss: int  # bytes: the largest sum over the process and its children (sampled every 10 ms)
    status: int
    stdout: str
    stderr: str
    cpu_own: float = 0.0  # seconds of CPU (user + system) of the process itself
    cpu_children: float = 0.0  # seconds of CPU of the children it waited for (a parse worker, say)


# A forked child starts with its parent's peak RSS as its own (Linux keeps the larger across
# exec), and this process holds the whole mix; so children are started from this tiny launcher,
# which reports the wall time, the CPU times and the peak RSS of the command it runs. The CPU times
# are read from /proc while the process is a zombie (waitid WNOWAIT): its own, and its children's.
_LAUNCHER = """
import os, subprocess, sys, threading, time
report, argv = sys.argv[1], sys.argv[2:]

def tree_rss(pid):  # kB resident in pid and its descendants (a parse worker, say)
    total, todo = 0, [pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as status:
                total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                todo += [int(child) for child in children.read().split()]
        except (OSError, ValueError):
            pass
    return total

started = time.perf_counter()
child = subprocess.Popen(argv)
tree_peak, done = 0, threading.Event()

def sample():
    global tree_peak
    while not done.wait(0.01):
        tree_peak = max(tree_peak, tree_rss(child.pid))

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
seconds = time.perf_counter() - started
with open(f"/proc/{child.pid}/stat") as stat:
    fields = stat.read().rsplit(")", 1)[1].split()  # after the command's name: field 3 on
tick = os.sysconf("SC_CLK_TCK")
own, children = (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick
_, status, usage = os.wait4(child.pid, 0)
done.set()
sampler.join()
with open(report, "w") as out:
    exit_code = os.waitstatus_to_exitcode(status)
    out.write(f"{seconds} {usage.ru_maxrss} {tree_peak} {exit_code} {own} {children}")
"""


def run_child(argv: list[str], cwd: Path) -> ChildRun:
    """Run ``argv`` and measure it: the wall time of the whole process, CPU times, peak RSS."""
    out_path, err_path, report = cwd / "child.out", cwd / "child.err", cwd / "child.measure"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *argv]
        subprocess.run(launcher, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, check=True)
    seconds, maxrss_kb, tree_kb, status, cpu_own, cpu_children = report.read_text().split()
    return ChildRun(
        float(seconds),
        int(maxrss_kb) * 1024,  # Linux reports kilobytes
        int(tree_kb) * 1024,
        int(status),
        out_path.read_text(errors="replace").strip(),
        err_path.read_text(errors="replace").strip(),
        float(cpu_own),
        float(cpu_children),
    )

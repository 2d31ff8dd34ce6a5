"""CI builds the wheel, installs it in a fresh venv and processes a sample mail with it.

This proves the wheel is complete on its own: the subject grammar, the bundled rule packs, the
schema migrations (``engine/storage/migrations/``) and the demo data travel inside it (as
``engine/_bundled/`` and ``engine/demo/``), and the installed ``mailgate`` finds them far from any
checkout. Dependencies are resolved by pip (from PyPI, or its
cache); the venv does not see the system's or the test venv's packages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PEOPLE = """\
groups:
  - name: Service Desk
people:
  - {email: ada@example.com, name: Ada Lovelace, user: true}
  - {email: grace@example.com, name: Grace Hopper, user: false, analyst: true, groups: [Service Desk]}
calls:
  - {number: 100, status: open, user: ada@example.com, summary: Printer jams}
"""

SAMPLE_MAIL = (
    b"From: Ada Lovelace <ada@example.com>\r\n"
    b"To: helpdesk@example.com\r\n"
    b"Subject: Outlook crashes when I open attachments\r\n"
    b"Message-ID: <wheel-sample-1@example.com>\r\n"
    b"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Outlook crashes every time I open a PDF attachment.\r\n"
)


def _isolated_env() -> dict[str, str]:
    """The environment minus anything that could make the checkout or another config visible."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "MAILGATE_CONFIG", "MAILGATE_DEBUG", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args: Sequence[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output if it exits non-zero or prints a traceback."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_isolated_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _ensure_build_frontend() -> None:
    """``build`` is in the test extras; install them if this venv lacks it."""
    if importlib.util.find_spec("build") is None:
        run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{REPO}[test]"], cwd=REPO)


@pytest.mark.wheel
def test_the_wheel_installs_in_a_fresh_venv_and_processes_a_sample_mail(tmp_path: Path) -> None:
    _ensure_build_frontend()
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, REPO], cwd=tmp_path)
    [wheel] = dist.glob("mailgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for shipped in (
        "engine/_bundled/grammars/subject.lark",
        "engine/_bundled/rules/default.yaml",
        "engine/demo/fixtures.yaml",
        "engine/cli.py",
        "engine/storage/migrations/env.py",
        "engine/storage/migrations/script.py.mako",
        "engine/storage/migrations/versions/r1_schema_of_mailgate_0_1_0.py",
        "connectors/__init__.py",
    ):
        assert shipped in names, f"{shipped} is missing from {wheel.name}"
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the Apache-2.0 text travels along"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python, mailgate = venv / "bin" / "python", venv / "bin" / "mailgate"
    run([python, "-m", "pip", "install", "-q", wheel], cwd=tmp_path)

    site = tmp_path / "site"
    site.mkdir()
    located = run(
        [
            python,
            "-c",
            "import json, engine, engine.resources as r; "
            "print(json.dumps([engine.__file__, str(r.grammars_dir()), str(r.rules_dir())]))",
        ],
        cwd=site,
    )
    package_file, grammars, rules = (Path(p) for p in json.loads(located.stdout))
    assert package_file.is_relative_to(venv), f"engine imported from {package_file}, not the wheel"
    assert grammars.is_relative_to(venv) and grammars.parts[-3:] == ("engine", "_bundled", "grammars")
    assert rules.is_relative_to(venv) and rules.parts[-3:] == ("engine", "_bundled", "rules")
    assert (grammars / "subject.lark").is_file()
    assert (rules / "default.yaml").is_file()

    run([mailgate, "init"], cwd=site)
    version = run([mailgate, "--version"], cwd=site).stdout
    [(shown, head)] = re.findall(r"^mailgate (\S+) \(database schema (r\d+)\)$", version, re.MULTILINE)
    assert wheel.name.startswith(f"mailgate-{shown}-"), f"--version says {shown}: {wheel.name}"
    assert run([mailgate, "db", "current"], cwd=site).stdout.strip() == f"{head} (head)"
    assert "nothing to upgrade" in run([mailgate, "db", "upgrade"], cwd=site).stdout
    assert run([mailgate, "db", "history"], cwd=site).stdout.startswith(f"{head} ")
    checked = run([mailgate, "check"], cwd=site)
    assert f"ok: rule pack default ({rules / 'default.yaml'})" in checked.stdout
    (site / "people.yaml").write_text(PEOPLE, encoding="utf-8")
    run([mailgate, "db", "load", "people.yaml"], cwd=site)
    (site / "sample.eml").write_bytes(SAMPLE_MAIL)
    processed = run([mailgate, "process", "--account", "helpdesk", "--json", "sample.eml"], cwd=site)
    [result] = [json.loads(line) for line in processed.stdout.splitlines() if line.strip()]
    assert result["outcome"] == "logged"
    assert result["rule"] == "log_new_call"
    assert result["entity"] == "call"
    assert result["replies"][0]["to"] == "ada@example.com"

    demo = run([mailgate, "demo", "demo-run"], cwd=site)
    assert "-> logged call" in demo.stdout
    assert (site / "demo-run" / "mailgate.yaml").is_file()

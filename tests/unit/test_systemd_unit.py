"""The systemd unit shipped in contrib/: hardened, accepted by systemd, and the one the docs show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAILGATE = Path(sys.executable).parent / "mailgate"
UNIT = ROOT / "contrib" / "systemd" / "mailgate.service"


def test_the_systemd_unit_is_hardened_and_is_the_one_the_docs_show() -> None:
    unit = UNIT.read_text(encoding="utf-8")
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in unit.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["ProtectSystem"] == "strict" and settings["ReadWritePaths"] == "/srv/desk"
    assert (settings["NoNewPrivileges"], settings["PrivateTmp"], settings["ProtectHome"]) == (
        "yes",
        "yes",
        "yes",
    )
    assert settings["CapabilityBoundingSet"] == "" and settings["KillMode"] == "mixed"
    assert " run" in settings["ExecStart"] and settings["Type"] == "exec"
    service_doc = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    assert f"```ini\n{unit}```" in service_doc


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        message = "systemd-analyze is not installed (Debian package systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true, so the unit must be checked)")
        pytest.skip(message)
    unit = UNIT.read_text(encoding="utf-8").replace("/opt/mailgate/bin/mailgate", str(MAILGATE))
    (tmp_path / "mailgate.service").write_text(unit, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "mailgate.service")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [line for line in done.stderr.splitlines() if "mailgate.service" in line]
    assert done.returncode == 0 and not problems, done.stderr

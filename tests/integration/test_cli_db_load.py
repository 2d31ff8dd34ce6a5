"""``mailgate db load`` of files that cannot be read: each mistake at its place, never an internal error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MAILGATE = str(Path(sys.executable).with_name("mailgate"))


def run(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run mailgate in ``cwd``; never a traceback, never an internal error."""
    done = subprocess.run([MAILGATE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``mailgate init`` installation, copied per test by ``desk``."""
    root = tmp_path_factory.mktemp("starter")
    assert run(root, "init", ".").returncode == 0
    return root


@pytest.fixture
def desk(starter: Path, tmp_path: Path) -> Path:
    """A fresh copy of the starter installation."""
    import shutil

    shutil.copytree(starter, tmp_path / "desk")
    return tmp_path / "desk"


def test_a_number_out_of_range_is_reported_at_its_place(desk: Path) -> None:
    bad = desk / "big.yaml"
    bad.write_text("calls:\n  - {number: 99999999999999999999999999, summary: x}\n", encoding="utf-8")
    done = run(desk, "db", "load", bad)
    assert done.returncode == 1
    assert f"{bad}:2:14: 'number' must be at most 2147483647; got a number of 26 digits" in done.stderr


def test_an_integer_of_thousands_of_digits_is_reported_at_its_place(desk: Path) -> None:
    bad = desk / "huge.yaml"
    bad.write_text("tasks:\n  - {number: 7, sequence: " + "9" * 5000 + "}\n", encoding="utf-8")
    done = run(desk, "db", "load", bad)
    assert done.returncode == 1
    assert done.stderr == f"{bad}:2:27: number too large: 5000 digits\n"


def test_a_50000_deep_nesting_is_reported_at_its_place(desk: Path) -> None:
    bad = desk / "deep.yaml"
    bad.write_text("people: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    done = run(desk, "db", "load", bad)
    assert done.returncode == 1
    assert done.stderr == f"{bad}:1:108: invalid YAML: lists and mappings nested more than 100 levels deep\n"


def test_a_deep_block_nesting_is_reported_too(desk: Path) -> None:
    bad = desk / "deep-block.yaml"
    bad.write_text("".join(" " * i + f"k{i}:\n" for i in range(3000)) + " " * 3000 + "v\n", encoding="utf-8")
    done = run(desk, "db", "load", bad)
    assert done.returncode == 1
    assert (
        done.stderr == f"{bad}:101:101: invalid YAML: lists and mappings nested more than 100 levels deep\n"
    )

"""``mailgate db load``: its output, its JSON, and files that cannot be read reported at their place."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

MAILGATE = str(Path(sys.executable).with_name("mailgate"))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "loading-data.md"


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


def documented_example() -> str:
    """The example file of docs/loading-data.md (its first yaml block)."""
    found = re.search(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert found, "docs/loading-data.md has no yaml example"
    return found.group(1)


def test_the_documented_example_loads_and_prints_what_the_doc_shows(desk: Path) -> None:
    (desk / "people.yaml").write_text(documented_example(), encoding="utf-8")
    done = run(desk, "db", "load", "people.yaml")
    assert done.returncode == 0, done.stderr
    shown = (
        "loaded people.yaml: 2 groups, 4 people, 2 calls, 1 request, 3 tasks (each added or updated); "
        "1 forward added"
    )
    assert done.stdout == shown + "\n"
    assert shown in DOCS.read_text(encoding="utf-8").replace("\n", " ")


def test_db_load_json_is_one_object_with_the_counts(desk: Path) -> None:
    (desk / "people.yaml").write_text(documented_example(), encoding="utf-8")
    done = run(desk, "db", "load", "--json", "people.yaml")
    assert json.loads(done.stdout) == {
        "file": "people.yaml",
        "groups": 2,
        "people": 4,
        "calls": 2,
        "requests": 1,
        "tasks": 3,
        "forwards_added": 1,
    }
    again = json.loads(run(desk, "db", "load", "--json", "people.yaml").stdout)
    assert again["forwards_added"] == 0  # an upsert: nothing new the second time


def test_a_person_listed_by_email_only_is_a_user_and_not_an_analyst(desk: Path) -> None:
    (desk / "people.yaml").write_text("people:\n  - {email: new@example.com}\n", encoding="utf-8")
    assert run(desk, "db", "load", "people.yaml").returncode == 0
    import sqlite3

    with sqlite3.connect(desk / "mailgate.sqlite") as connection:
        row = connection.execute(
            "SELECT is_user, is_analyst, take_over, name FROM person WHERE email = 'new@example.com'"
        ).fetchone()
    assert row == (1, 0, 0, "")


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


def test_the_demo_says_in_words_what_it_loaded(tmp_path: Path) -> None:
    done = run(tmp_path, "demo", "demo-run")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("demo installation in demo-run/ ; fixtures loaded: 2 groups, 4 people, ")
    assert "FixtureCounts" not in done.stdout

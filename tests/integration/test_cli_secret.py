"""``mailgate secret list|rotate`` through the real console script: the reply-token secret is made by
``mailgate init``, kept in the database, rotated with a grace period, and never printed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli_run import run


def stored_secrets(root: Path) -> list[tuple[int, str]]:
    """The secrets as the SQLite file holds them."""
    with sqlite3.connect(root / "mailgate.sqlite") as connection:
        return list(connection.execute("SELECT id, secret FROM replytokensecret ORDER BY id"))


def test_init_makes_one_secret_in_the_database_and_list_shows_it_without_the_secret(tmp_path: Path) -> None:
    run(tmp_path, "init", ".")
    [(secret_id, secret)] = stored_secrets(tmp_path)
    assert len(bytes.fromhex(secret)) == 32
    listed = run(tmp_path, "secret", "list", "--json").stdout
    [row] = [json.loads(line) for line in listed.splitlines()]
    assert (row["id"], row["state"], row["verify_until"]) == (secret_id, "signing", None)
    assert secret not in listed
    assert secret not in run(tmp_path, "secret", "list").stdout


def test_rotate_signs_with_a_new_secret_and_keeps_the_old_one_for_the_grace_period(tmp_path: Path) -> None:
    run(tmp_path, "init", ".")
    said = run(tmp_path, "secret", "rotate", "--grace-days", "7").stdout
    assert said.startswith("secret 2 now signs; retired secret(s) 1 verify until ")
    rows = [json.loads(line) for line in run(tmp_path, "secret", "list", "--json").stdout.splitlines()]
    assert [(r["id"], r["state"]) for r in rows] == [(1, "verifying"), (2, "signing")]
    run(tmp_path, "secret", "rotate", "--grace-days", "0")
    rows = [json.loads(line) for line in run(tmp_path, "secret", "list", "--json").stdout.splitlines()]
    assert [(r["id"], r["state"]) for r in rows] == [(1, "expired"), (2, "expired"), (3, "signing")]
    assert len({secret for _, secret in stored_secrets(tmp_path)}) == 3


def test_a_negative_grace_period_is_a_usage_error(tmp_path: Path) -> None:
    run(tmp_path, "init", ".")
    done = run(tmp_path, "secret", "rotate", "--grace-days", "-1", ok=False)
    assert done.returncode == 2 and "--grace-days" in done.stderr
    assert len(stored_secrets(tmp_path)) == 1

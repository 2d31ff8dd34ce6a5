"""The global options (``--config``, ``-v``, ``--log-format``) written after the subcommand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from engine.cli import hoist_global_options, main

MAILGATE = str(Path(sys.executable).with_name("mailgate"))


def run(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the console script in ``cwd``; never a traceback."""
    done = subprocess.run(
        [MAILGATE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A starter installation's config file, to be named from another folder."""
    root = tmp_path_factory.mktemp("desk")
    assert run(root, "init", ".").returncode == 0
    return root / "mailgate.yaml"


def test_config_after_the_subcommand_finds_the_installation(config: Path, tmp_path: Path) -> None:
    checked = run(tmp_path, "check", "--config", config)
    assert checked.returncode == 0, checked.stderr
    assert f"ok: config {config}" in checked.stdout
    listed = run(tmp_path, "quarantine", "list", f"--config={config}")
    assert listed.returncode == 0, listed.stderr


def test_verbose_and_log_format_after_run_log_json_lines(config: Path, tmp_path: Path) -> None:
    done = run(tmp_path, "run", "--once", "-v", "--config", config, "--log-format", "json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(event["event"] == "polled" and event["account"] == "helpdesk" for event in events)


def test_status_accepts_the_config_after_the_subcommand(config: Path, tmp_path: Path) -> None:
    done = run(tmp_path, "status", "--config", config)
    assert "helpdesk" in done.stdout, done.stderr
    assert done.returncode == 3  # the service has never run on this database


def test_a_subcommands_own_option_of_the_same_name_is_not_taken() -> None:
    @click.group()
    @click.option("--config")
    @click.option("-v", "--verbose", is_flag=True)
    def root(config: str | None, verbose: bool) -> None:
        """A root group with global options."""

    @root.command()
    @click.option("--config", "own_config")
    def sub(own_config: str | None) -> None:
        """A subcommand with its own --config."""

    assert hoist_global_options(root, ["sub", "--config", "mine", "-v"]) == ["-v", "sub", "--config", "mine"]


def test_option_values_and_arguments_after_double_dash_stay_put() -> None:
    assert hoist_global_options(main, ["process", "--account", "-v", "m.eml"]) == [
        "process",
        "--account",
        "-v",
        "m.eml",
    ]
    assert hoist_global_options(main, ["run", "--", "-v"]) == ["run", "--", "-v"]
    assert hoist_global_options(main, ["run", "--version"]) == ["run", "--version"]


def test_every_help_text_says_the_global_options_may_follow_the_command(tmp_path: Path) -> None:
    for args in (
        ("--help",),
        ("run", "--help"),
        ("quarantine", "list", "--help"),
        ("db", "--help"),
        ("web", "--help"),  # commands made with plain click, registered from their own module
        ("admin", "add", "--help"),
    ):
        text = " ".join(run(tmp_path, *args).stdout.split())
        assert "--config FILE, -v and --log-format may also follow the command" in text, args

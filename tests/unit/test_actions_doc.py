"""docs/actions.md's example is real: its action, pack and test are loaded from the page and run."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.actions.registry import ACTIONS
from engine.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "actions.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.fixture
def example() -> Iterator[dict[str, Any]]:
    """The page's Python blocks run in one namespace: the action class, then its test function."""
    module = types.ModuleType("docs_actions_example")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    for block in _blocks("python"):
        exec(compile(block, str(DOC), "exec"), module.__dict__)  # our own documentation
    yield module.__dict__
    ACTIONS.unregister("add_note")
    del sys.modules[module.__name__]


@pytest.fixture
def pack() -> str:
    [pack_yaml] = _blocks("yaml")
    return pack_yaml


def test_the_documented_action_runs_through_the_documented_harness_test(
    example: dict[str, Any], pack: str, tmp_path: Path
) -> None:
    example["test_add_note_writes_its_text_into_the_new_calls_history"](tmp_path, pack)


def test_the_documented_action_refuses_an_empty_text_at_load_with_its_position(
    example: dict[str, Any], pack: str, tmp_path: Path
) -> None:
    from engine.actions.registry import register_action
    from engine.actions.testing import ActionHarness

    register_action(example["AddNote"])
    broken = pack.replace('text: "Received out of hours: answered next working day."', 'text: ""')
    with pytest.raises(ConfigError) as error:
        ActionHarness(tmp_path, pack=broken)
    assert re.search(r"pack\.yaml:\d+:\d+: .*text", str(error.value))

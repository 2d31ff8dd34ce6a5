"""Rule-pack YAML kept between processes (engine.config.yaml_cache): same trees, never in the way."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.config import yaml_cache, yaml_source
from engine.config.yaml_source import load_pack_yaml_file, load_yaml_file
from engine.errors import ConfigError
from engine.resources import rules_dir
from engine.rules import pack as pack_module
from engine.rules.pack import load_pack


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh cache folder (``$XDG_CACHE_HOME/mailgate``) for this test alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(pack_module, "_CACHE", {})
    return tmp_path / "xdg" / "mailgate"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file names really parsed (not read back from the cache) while the test runs."""
    seen: list[str] = []
    real = yaml_source.load_yaml_text

    def counting(text: str, filename: str) -> Any:
        seen.append(filename)
        return real(text, filename)

    monkeypatch.setattr(yaml_source, "load_yaml_text", counting)
    return seen


def _same_tree(a: Any, b: Any) -> None:
    """Equal values, of the same types, written at the same lines and columns."""
    assert type(a) is type(b)
    assert a == b
    if isinstance(a, CommentedMap):
        assert (a.lc.line, a.lc.col) == (b.lc.line, b.lc.col)
        for key in a:
            assert (a.lc.key(key), a.lc.value(key)) == (b.lc.key(key), b.lc.value(key))
            _same_tree(a[key], b[key])
    elif isinstance(a, CommentedSeq):
        assert (a.lc.line, a.lc.col) == (b.lc.line, b.lc.col)
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert a.lc.item(index) == b.lc.item(index)
            _same_tree(x, y)


def _pack(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "mine.yaml"
    shutil.copy(rules_dir() / "default.yaml", path)
    if body:
        path.write_text(path.read_text(encoding="utf-8") + body, encoding="utf-8")
    return path


def test_a_pack_parsed_before_is_read_back_with_the_same_values_types_and_positions(
    cache: Path, parses: list[str]
) -> None:
    path = rules_dir() / "default.yaml"
    first = load_pack_yaml_file(path)
    again = load_pack_yaml_file(path)
    assert parses == [str(path)]  # the second came from the cache
    assert len(list(cache.glob("pack-yaml-*.pickle"))) == 1
    _same_tree(again, first)
    _same_tree(again, load_yaml_file(path))


def test_a_pack_loaded_by_a_later_process_is_the_same_pack(cache: Path, parses: list[str]) -> None:
    first = load_pack("default", rules_dir())
    pack_module._CACHE.clear()  # as a new process would
    again = load_pack("default", rules_dir())
    assert len(parses) == 1
    assert again is not first
    assert [(r.name, r.where, r.when, r.outcome) for r in again.rules] == [
        (r.name, r.where, r.when, r.outcome) for r in first.rules
    ]
    assert dict(again.keywords) == dict(first.keywords)
    assert {name: t.where for name, t in again.templates.items()} == {
        name: t.where for name, t in first.templates.items()
    }


def test_a_changed_pack_file_is_parsed_afresh(cache: Path, parses: list[str], tmp_path: Path) -> None:
    path = _pack(tmp_path)
    load_pack_yaml_file(path)
    path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    load_pack_yaml_file(path)
    assert parses == [str(path), str(path)]


def test_a_pack_with_a_mistake_is_reported_each_time_and_never_kept(
    cache: Path, parses: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nrules: [\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(ConfigError) as raised:
            load_pack_yaml_file(path)
        assert str(raised.value.problems[0]).startswith(f"{path}:3:1: invalid YAML")
    assert len(parses) == 2
    assert not list(cache.glob("pack-yaml-*"))


@pytest.mark.parametrize(
    "entry",
    [
        b"",
        b"mailgate-yaml-rt-1\n",
        b"mailgate-yaml-rt-1\nnot a pickle",
        b"something else entirely",
        b"mailgate-yaml-rt-1\n" + pickle.dumps(os.system),  # foreign: not a parsed tree's class
    ],
    ids=["empty", "header only", "corrupt", "foreign header", "foreign class"],
)
def test_a_corrupt_or_foreign_cache_entry_does_not_stop_loading(
    cache: Path, parses: list[str], entry: bytes
) -> None:
    path = rules_dir() / "default.yaml"
    cache.mkdir(parents=True, mode=0o700)
    (cache / yaml_cache.entry_name(path.read_text(encoding="utf-8"))).write_bytes(entry)
    tree = load_pack_yaml_file(path)
    assert parses == [str(path)]
    _same_tree(tree, load_yaml_file(path))
    assert load_pack("default", rules_dir()).rules  # and the pack loads as ever


def test_a_cache_folder_that_others_may_write_to_is_not_used(cache: Path, parses: list[str]) -> None:
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    path = rules_dir() / "default.yaml"
    load_pack_yaml_file(path)
    load_pack_yaml_file(path)
    assert parses == [str(path), str(path)]
    assert not list(cache.iterdir())


def test_a_cache_folder_that_cannot_be_made_does_not_stop_loading(
    monkeypatch: pytest.MonkeyPatch, parses: list[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(pack_module, "_CACHE", {})
    assert yaml_cache.cache_dir() is None
    assert load_pack("default", rules_dir()).rules


def test_the_cache_keeps_only_the_entries_written_last(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(yaml_cache, "ENTRIES_KEPT", 3)
    path = tmp_path / "small.yaml"
    for number in range(5):
        path.write_text(f"name: n{number}\n", encoding="utf-8")
        load_pack_yaml_file(path)
        os.utime(cache / yaml_cache.entry_name(path.read_text(encoding="utf-8")), ns=(number, number))
    kept = {entry.name for entry in cache.glob("pack-yaml-*.pickle")}
    assert kept == {yaml_cache.entry_name(f"name: n{number}\n") for number in (2, 3, 4)}

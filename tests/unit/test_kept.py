"""What start-up makes, kept between processes (engine.config.kept): the same pack trees and subject
parsers as made afresh, and never in the way."""

from __future__ import annotations

import marshal
import os
import pickle
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import __version__ as ruamel_version
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.config import kept, yaml_source
from engine.config.yaml_source import PACK_YAML, Problems, load_pack_yaml_file, load_yaml_file, load_yaml_text
from engine.errors import ConfigError
from engine.resources import rules_dir
from engine.rules import pack as pack_module
from engine.rules import subject as subject_module
from engine.rules.pack import load_pack
from engine.rules.subject import Intent, KeywordError, Keywords, _parser_for, default_keywords, parse_subject
from engine.rules.templates import SAMPLE_VARIABLES, TEMPLATE_CODE, compile_templates, sample_variables


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


def _entry(cache: Path, text: str) -> Path:
    return cache / kept.entry_name(PACK_YAML, (ruamel_version, text))


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
        b"mailgate-kept-1\n",
        b"mailgate-kept-1\nnot a pickle",
        b"something else entirely",
        b"mailgate-kept-1\n" + pickle.dumps(os.system),  # foreign: not a parsed tree's class
    ],
    ids=["empty", "header only", "corrupt", "foreign header", "foreign class"],
)
def test_a_corrupt_or_foreign_cache_entry_does_not_stop_loading(
    cache: Path, parses: list[str], entry: bytes
) -> None:
    path = rules_dir() / "default.yaml"
    cache.mkdir(parents=True, mode=0o700)
    _entry(cache, path.read_text(encoding="utf-8")).write_bytes(entry)
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
    assert kept.cache_dir() is None
    assert load_pack("default", rules_dir()).rules


def test_the_cache_keeps_only_the_entries_written_last(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(kept, "ENTRIES_KEPT", 3)
    path = tmp_path / "small.yaml"
    for number in range(5):
        path.write_text(f"name: n{number}\n", encoding="utf-8")
        load_pack_yaml_file(path)
        os.utime(_entry(cache, path.read_text(encoding="utf-8")), ns=(number, number))
    names = {entry.name for entry in cache.glob("pack-yaml-*.pickle")}
    assert names == {_entry(cache, f"name: n{number}\n").name for number in (2, 3, 4)}


# ---- the subject parser --------------------------------------------------------------------------

SUBJECTS = [
    "Re: AW: [CLOSE#12] printer",
    "[ close # 0012 ] done",
    "call 12 please",
    "Call No. 5, request 7",
    "[MYCALLS]",
    "[APPROVE#3] and [REJECT#4]",
    "Task 10:30",
    "nothing at all",
    "[SCHLIESSEN#9] erledigt",
    "Ticket 44",
    " ",
]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, cache: Path) -> Iterator[list[dict[str, str]]]:
    """The keyword sets whose parser was really built (not read back) while the test runs."""
    built: list[dict[str, str]] = []
    real = subject_module._build_parser

    def counting(replacements: dict[str, str]) -> Any:
        built.append(replacements)
        return real(replacements)

    monkeypatch.setattr(subject_module, "_build_parser", counting)
    _parser_for.cache_clear()
    yield built
    _parser_for.cache_clear()


def _custom() -> Keywords:
    return default_keywords().replaced(close_call=("SCHLIESSEN",), call_word=("Ticket",))


def test_a_kept_subject_parser_reads_every_subject_as_a_built_one(builds: list[dict[str, str]]) -> None:
    built = _parser_for(default_keywords())
    _parser_for.cache_clear()  # as a new process would
    again = _parser_for(default_keywords())
    assert len(builds) == 1 and again is not built
    generator = random.Random(7)
    fragments = ["[", "]", "#", ":", " ", "12", "0", "Re", "CLOSE", "Call", "No.", "Task", "ä", "\x00"]
    randoms = [
        "".join(generator.choice(fragments) for _ in range(generator.randint(0, 30))) for _ in range(500)
    ]
    for subject in filter(None, SUBJECTS + randoms):
        assert again.parse(subject) == built.parse(subject) == parse_subject(subject)


def test_custom_keywords_get_a_kept_parser_of_their_own(builds: list[dict[str, str]]) -> None:
    assert parse_subject("[SCHLIESSEN#9] erledigt").intent is Intent.UNRECOGNISED
    assert parse_subject("[SCHLIESSEN#9] erledigt", _custom()).intent is Intent.CLOSE_CALL
    _parser_for.cache_clear()
    assert parse_subject("[SCHLIESSEN#9] erledigt").intent is Intent.UNRECOGNISED
    assert parse_subject("Ticket 44", _custom()).number == 44
    assert parse_subject("[CLOSE#9]", _custom()).intent is Intent.UNRECOGNISED
    assert len(builds) == 2  # each set once, then read back
    assert len(list(_kept_parsers())) == 2


def test_two_accounts_sharing_a_pack_build_its_subject_parser_once(builds: list[dict[str, str]]) -> None:
    first = load_pack("default", rules_dir())
    pack_module._CACHE.clear()  # a second account naming the same pack by another path
    second = load_pack(str(rules_dir() / "default.yaml"), rules_dir())
    assert first.keywords == second.keywords
    assert len(builds) == 1


@pytest.mark.parametrize(
    "data",
    [{"memo": {}, "data": {}}, {"unexpected": 1}, "a string"],
    ids=["empty", "foreign", "not a mapping"],
)
def test_a_corrupt_kept_subject_parser_is_built_afresh(builds: list[dict[str, str]], data: Any) -> None:
    _parser_for(default_keywords())
    (entry,) = _kept_parsers()
    entry.write_bytes(b"mailgate-kept-1\n" + pickle.dumps(data))
    _parser_for.cache_clear()
    assert parse_subject("Re: [CLOSE#12] x").number == 12
    assert len(builds) == 2


def test_a_subject_parser_whose_grammar_is_refused_is_never_kept(
    monkeypatch: pytest.MonkeyPatch, builds: list[dict[str, str]]
) -> None:
    grammar = subject_module._grammar_text()
    with_orphan = grammar.replace("| _TEXT", "| ORPHAN\n        | _TEXT") + 'ORPHAN.3: "[ORPHAN]"\n'
    monkeypatch.setattr(subject_module, "_grammar_text", lambda: with_orphan)
    for _ in range(2):
        _parser_for.cache_clear()
        with pytest.raises(KeywordError, match="ORPHAN"):
            _parser_for(default_keywords())
    assert len(builds) == 2
    assert not list(_kept_parsers())


def _kept_parsers() -> Iterator[Path]:
    folder = kept.cache_dir()
    assert folder is not None
    return folder.glob(f"{subject_module.SUBJECT_PARSER}-*.pickle")


# ---- template code -------------------------------------------------------------------------------


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch, cache: Path) -> list[str]:
    """The template texts really compiled (not read back) while the test runs."""
    seen: list[str] = []
    real = SandboxedEnvironment.compile

    def counting(self: SandboxedEnvironment, source: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(SandboxedEnvironment, "compile", counting)
    return seen


def _default_templates() -> Any:
    return load_pack_yaml_file(rules_dir() / "default.yaml")["templates"]


def test_kept_template_code_renders_every_template_as_compiled_code_does(compiles: list[str]) -> None:
    first = compile_templates(_default_templates(), Problems("default.yaml"), SAMPLE_VARIABLES)
    compiled = len(compiles)
    again = compile_templates(_default_templates(), Problems("default.yaml"), SAMPLE_VARIABLES)
    assert compiled > 30 and len(compiles) == compiled  # the second time, none was compiled
    assert again.keys() == first.keys()
    for name, template in again.items():
        variables = sample_variables(name)
        assert template.render_message(variables) == first[name].render_message(variables)
        assert template.where == first[name].where


def test_a_template_with_a_mistake_is_reported_each_time_and_never_kept(
    compiles: list[str], tmp_path: Path
) -> None:
    node = load_yaml_text("bad:\n  subject: '{{ oops'\n  body: 'x {{ nofilter | nosuch }}'\n", "t.yaml")
    for _ in range(2):
        problems = Problems("t.yaml")
        assert compile_templates(node, problems, SAMPLE_VARIABLES) == {}
        assert [str(p) for p in problems] == [
            "t.yaml:2:12: template 'bad' subject: unexpected end of template, expected 'end of print"
            " statement'. (template line 1)",
            "t.yaml:3:9: template 'bad' body: No filter named 'nosuch'. (template line 1)",
        ]
    assert len(compiles) == 4
    assert not list((kept.cache_dir() or tmp_path).glob(f"{TEMPLATE_CODE}-*"))


@pytest.mark.parametrize(
    "entry",
    [(b"\0" * 32, marshal.dumps(compile("import os", "<x>", "exec"))), "not a pair", (b"", b"")],
    ids=["changed code", "not a pair", "empty"],
)
def test_corrupt_kept_template_code_is_compiled_afresh(compiles: list[str], entry: Any) -> None:
    node = load_yaml_text("ok:\n  subject: 'Call {{ number }}'\n  body: 'x'\n", "t.yaml")
    compile_templates(node, Problems("t.yaml"), SAMPLE_VARIABLES)
    folder = kept.cache_dir()
    assert folder is not None
    for path in folder.glob(f"{TEMPLATE_CODE}-*.pickle"):
        path.write_bytes(b"mailgate-kept-1\n" + pickle.dumps(entry))
    again = compile_templates(node, Problems("t.yaml"), SAMPLE_VARIABLES)
    assert again["ok"].render(SAMPLE_VARIABLES) == ("Call 12", "x")
    assert len(compiles) == 4

"""The subject grammar: which command a subject carries, with default and admin-chosen keywords."""

from __future__ import annotations

import ast
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.config.yaml_source import load_yaml_text
from engine.errors import MailgateError
from engine.resources import rules_dir
from engine.rules import subject as subject_module
from engine.rules.pack import load_pack
from engine.rules.subject import (
    Intent,
    KeywordError,
    Keywords,
    ParsedSubject,
    _parser_for,
    compile_keywords,
    default_keywords,
    keyword_slots,
    parse_subject,
)
from engine.rules.vocabulary import ELEMENTS, Element, Shape

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is optional; the seeded fuzz loop still runs
    HAVE_HYPOTHESIS = False


def assert_well_formed(subject: str, parsed: ParsedSubject) -> None:
    """Every element is the subject text at its offset, and the winner is one of the elements."""
    assert isinstance(parsed, ParsedSubject)
    for element in parsed.elements:
        assert subject[element.start : element.start + len(element.text)] == element.text
        assert element.number is None or element.number > 0
    if parsed.intent is Intent.UNRECOGNISED:
        assert parsed.elements == () and parsed.matched is None and parsed.number is None
    else:
        assert parsed.matched in {e.text for e in parsed.elements}


# ---- every form -----------------------------------------------------------------------------------

EVERY_FORM = [
    ("[CLOSE#12]", Intent.CLOSE_CALL, 12, True),
    ("[APPROVE#7]", Intent.APPROVE_TASK, 7, True),
    ("[REJECT#7]", Intent.REJECT_TASK, 7, True),
    ("[MyCalls]", Intent.MY_CALLS, None, True),
    ("[MyRequests]", Intent.MY_REQUESTS, None, True),
    ("[MyTasks]", Intent.MY_TASKS, None, True),
    ("[MyApprovals]", Intent.MY_APPROVALS, None, True),
    ("[CALL#4711]", Intent.UPDATE_CALL, 4711, True),
    ("[REQ#88]", Intent.UPDATE_REQUEST, 88, True),
    ("[TASK#5]", Intent.UPDATE_TASK, 5, True),
    ("[APPROVAL#6]", Intent.UPDATE_TASK, 6, True),
    ("Call 4711", Intent.UPDATE_CALL, 4711, False),
    ("Call No 4711", Intent.UPDATE_CALL, 4711, False),
    ("Call No. 4711", Intent.UPDATE_CALL, 4711, False),
    ("Request 88", Intent.UPDATE_REQUEST, 88, False),
    ("Task 5", Intent.UPDATE_TASK, 5, False),
    ("Approval 6", Intent.UPDATE_TASK, 6, False),
    ("Task/Approval 9", Intent.UPDATE_TASK, 9, False),
]


@pytest.mark.parametrize(("subject", "intent", "number", "bracketed"), EVERY_FORM)
def test_each_form_is_recognised(subject: str, intent: Intent, number: int | None, bracketed: bool) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number, parsed.bracketed, parsed.matched) == (
        intent,
        number,
        bracketed,
        subject,
    )


@pytest.mark.parametrize(("subject", "intent", "number", "bracketed"), EVERY_FORM)
@pytest.mark.parametrize("change_case", [str.lower, str.upper, str.swapcase])
def test_keywords_match_in_any_case(
    subject: str, intent: Intent, number: int | None, bracketed: bool, change_case: Any
) -> None:
    parsed = parse_subject(change_case(subject))
    assert (parsed.intent, parsed.number, parsed.bracketed) == (intent, number, bracketed)


@pytest.mark.parametrize(
    "tag", ["[MyCalls]", "[MyRequests]", "[MyTasks]", "[MyApprovals]", "[ mycalls ]", "[MYTASKS]"]
)
def test_summary_tags_carry_no_number(tag: str) -> None:
    parsed = parse_subject(f"Please send {tag}")
    assert parsed.number is None and parsed.bracketed


# ---- prefixes and position ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "prefixes"),
    [
        ("Re: [CLOSE#12]", ("Re:",)),
        ("RE: RE: [CLOSE#12]", ("RE:", "RE:")),
        ("Re[2]: [CLOSE#12]", ("Re[2]:",)),
        ("Re [3] : [CLOSE#12]", ("Re [3] :",)),
        ("AW: WG: [CLOSE#12]", ("AW:", "WG:")),
        ("Fwd: FW: Fw: [CLOSE#12]", ("Fwd:", "FW:", "Fw:")),
        ("SV: VS: TR: [CLOSE#12]", ("SV:", "VS:", "TR:")),
        ("Re:AW:[CLOSE#12]", ("Re:", "AW:")),
        ("re[10]: aw: Re[2]: [CLOSE#12]", ("re[10]:", "aw:", "Re[2]:")),
        ("Re:\r\n\t[CLOSE#12]", ("Re:",)),
    ],
)
def test_command_is_found_after_stacked_prefixes_with_counters(
    subject: str, prefixes: tuple[str, ...]
) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number, parsed.prefixes) == (Intent.CLOSE_CALL, 12, prefixes)


@pytest.mark.parametrize(
    "subject",
    [
        "Ticket Re: [CALL#1]",  # a prefix after ordinary text is ordinary text
        "Reply: [CALL#1]",  # not a prefix keyword
        "Re [CALL#1]",  # a prefix needs its colon
        "SVN: [CALL#1]",  # a prefix keyword must be the whole word
    ],
)
def test_prefix_is_only_a_prefix_at_the_start_as_a_whole_word_with_its_colon(subject: str) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.prefixes) == (Intent.UPDATE_CALL, ())


@pytest.mark.parametrize(
    "subject",
    [
        "[CALL#55] printer broken",
        "printer broken [CALL#55]",
        "printer [CALL#55] broken",
        "Re: printer broken, see Call 55",
        "printer broken (Call 55)",
        "printer broken: Call 55.",
        "printer broken - 'Call 55', please help",
    ],
)
def test_command_is_found_anywhere_in_the_subject(subject: str) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number) == (Intent.UPDATE_CALL, 55)


def test_element_offsets_point_at_their_text() -> None:
    subject = "Re: Call 5 and [ REQ # 6 ] and Task 7"
    parsed = parse_subject(subject)
    assert [(e.text, e.start) for e in parsed.elements] == [
        ("Call 5", 4),
        ("[ REQ # 6 ]", 15),
        ("Task 7", 31),
    ]
    assert_well_formed(subject, parsed)


# ---- which element wins ------------------------------------------------------------------------------


def test_bracketed_command_wins_over_an_earlier_mention() -> None:
    parsed = parse_subject("Re: Call 5 - please [CLOSE#12]")
    assert (parsed.intent, parsed.number, parsed.matched) == (Intent.CLOSE_CALL, 12, "[CLOSE#12]")
    assert [e.intent for e in parsed.elements] == [Intent.UPDATE_CALL, Intent.CLOSE_CALL]


@pytest.mark.parametrize(
    ("subject", "intent", "number"),
    [
        ("[APPROVE#3] [REJECT#3]", Intent.APPROVE_TASK, 3),
        ("[REJECT#3] [APPROVE#3]", Intent.REJECT_TASK, 3),
        ("[CALL#1] [CLOSE#2]", Intent.UPDATE_CALL, 1),
        ("Task 9 [MyTasks] [TASK#4]", Intent.MY_TASKS, None),
    ],
)
def test_first_bracketed_command_wins(subject: str, intent: Intent, number: int | None) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number) == (intent, number)


@pytest.mark.parametrize(
    ("subject", "intent", "number"),
    [
        ("Call 1 and Request 2", Intent.UPDATE_CALL, 1),
        ("Request 2 and Call 1", Intent.UPDATE_REQUEST, 2),
        ("Task 3, Task 4", Intent.UPDATE_TASK, 3),
    ],
)
def test_first_mention_wins_when_nothing_is_bracketed(subject: str, intent: Intent, number: int) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number, parsed.bracketed) == (intent, number, False)


# ---- what is not a command ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "[CLOSE#]",
        "[CLOSE#12a]",
        "[CLOSE#-1]",
        "[CLOSE#1.5]",
        "[CLOSE#0]",
        "[CLOSE#000]",
        "[CLOSE##12]",
        "[CLOSE 12]x",
        "[CLOSE#12",
        "CLOSE#12]",
        "[#12]",
        "[CLOSE#１２]",  # full-width digits are not numbers
        "[MyCalls#3]",
        "[My Calls]",
        "[CLOSE#1234567890123456789]",  # more than 18 digits
    ],
)
def test_malformed_tags_are_unrecognised(subject: str) -> None:
    parsed = parse_subject(subject)
    assert parsed.intent is Intent.UNRECOGNISED
    assert_well_formed(subject, parsed)


def test_malformed_tag_does_not_hide_a_later_command() -> None:
    parsed = parse_subject("[CLOSE#12a] [CLOSE#13]")
    assert (parsed.intent, parsed.number) == (Intent.CLOSE_CALL, 13)


@pytest.mark.parametrize(
    "subject",
    ["Recall 12", "Call 12a", "Callback 3", "Call12", "Subcall 5", "Request 12x", "Task_ 5", "Call 0"],
)
def test_mentions_must_be_whole_words_with_a_positive_number(subject: str) -> None:
    assert parse_subject(subject).intent is Intent.UNRECOGNISED


@pytest.mark.parametrize(
    "subject",
    ["please call 555-0100", "Call 12.5", "Task 10:30", "Call 12/13", "Request 1,234", "Call 2024-05-14"],
)
def test_number_running_on_into_a_phone_number_date_or_time_is_not_a_mention(subject: str) -> None:
    assert parse_subject(subject).intent is Intent.UNRECOGNISED


@pytest.mark.parametrize(
    "subject", ["Call 12 - printer", "Call 12, please", "Call 12: printer", "Call 12/ printer", "Call 12."]
)
def test_punctuation_after_a_mention_number_ends_it(subject: str) -> None:
    assert (parse_subject(subject).intent, parse_subject(subject).number) == (Intent.UPDATE_CALL, 12)


@pytest.mark.parametrize(
    "subject",
    ["", "Hello", "Printer on floor 3 broken", "Call me maybe", "Re: lunch at 12", "Re:", "[", "]", "#12"],
)
def test_subject_without_a_command_is_unrecognised(subject: str) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number, parsed.matched, parsed.elements) == (
        Intent.UNRECOGNISED,
        None,
        None,
        (),
    )


# ---- numbers and whitespace -----------------------------------------------------------------------


@pytest.mark.parametrize(("subject", "number"), [("[CALL#0012]", 12), ("Call 007", 7), ("[CALL#1]", 1)])
def test_leading_zeros_are_dropped_from_numbers(subject: str, number: int) -> None:
    assert parse_subject(subject).number == number


@pytest.mark.parametrize(
    "subject",
    [
        "[ CLOSE # 12 ]",
        "[CLOSE #12]",
        "[CLOSE# 12]",
        "[\tCLOSE\t#\t12\t]",
        "[CLOSE\r\n #12]",
        "[  close#12  ]",
    ],
)
def test_whitespace_inside_tags_is_tolerated(subject: str) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number, parsed.matched) == (Intent.CLOSE_CALL, 12, subject)


@pytest.mark.parametrize("subject", ["Call\r\n 12", "Call\t12", "Call   No.\n 12", "Call\u00a012"])
def test_folded_header_whitespace_counts_as_whitespace_in_mentions(subject: str) -> None:
    parsed = parse_subject(subject)
    assert (parsed.intent, parsed.number) == (Intent.UPDATE_CALL, 12)


# ---- admin keywords -------------------------------------------------------------------------------

GERMAN = default_keywords().replaced(
    close_call=("CLOSE", "SCHLIESSEN"), call_word=("Anruf",), reply_prefix=("AW", "Antw")
)


@pytest.mark.parametrize(
    ("subject", "intent", "number"),
    [
        ("[SCHLIESSEN#12]", Intent.CLOSE_CALL, 12),
        ("[schliessen # 12]", Intent.CLOSE_CALL, 12),
        ("[CLOSE#12]", Intent.CLOSE_CALL, 12),
        ("Antw: Anruf 12", Intent.UPDATE_CALL, 12),
        ("AW: anruf 12", Intent.UPDATE_CALL, 12),
    ],
)
def test_custom_keywords_are_recognised(subject: str, intent: Intent, number: int) -> None:
    parsed = parse_subject(subject, GERMAN)
    assert (parsed.intent, parsed.number) == (intent, number)


@pytest.mark.parametrize("subject", ["Call 12", "Call No. 12"])
def test_replaced_default_keywords_are_no_longer_recognised(subject: str) -> None:
    assert parse_subject(subject).intent is Intent.UPDATE_CALL
    assert parse_subject(subject, GERMAN).intent is Intent.UNRECOGNISED


def test_replaced_reply_prefix_is_no_longer_a_prefix() -> None:
    assert parse_subject("Re: Antw: Anruf 1", GERMAN).prefixes == ()
    assert parse_subject("Antw: Re: Anruf 1", GERMAN).prefixes == ("Antw:",)


@pytest.mark.parametrize("subject", ["Ticket Nr. 5", "ticket  nr.\t5", "TICKET\r\n NR. 5"])
def test_space_inside_a_keyword_matches_any_whitespace(subject: str) -> None:
    keywords = default_keywords().replaced(call_word=("Ticket Nr.",))
    assert (parse_subject(subject, keywords).intent, parse_subject(subject, keywords).number) == (
        Intent.UPDATE_CALL,
        5,
    )


@pytest.mark.parametrize(
    ("subject", "intent"), [("C.ll 5", Intent.UPDATE_CALL), ("Call 5", Intent.UNRECOGNISED)]
)
def test_regex_characters_in_keywords_match_literally(subject: str, intent: Intent) -> None:
    keywords = default_keywords().replaced(call_word=("C.ll",), request_tag=("R+Q",))
    assert parse_subject(subject, keywords).intent is intent
    assert parse_subject("[R+Q#3]", keywords).intent is Intent.UPDATE_REQUEST
    assert parse_subject("[RRQ#3]", keywords).intent is Intent.UNRECOGNISED


def test_keywords_given_as_lists_are_stored_as_tuples() -> None:
    keywords = default_keywords().replaced(close_call=["CLOSE", "ZU"])
    assert keywords["close_call"] == ("CLOSE", "ZU")
    assert parse_subject("[zu#1]", keywords).intent is Intent.CLOSE_CALL


@pytest.mark.parametrize(
    ("slot", "value"),
    [
        ("close_call", ()),
        ("close_call", ("",)),
        ("close_call", ("   ",)),
        ("close_call", ("CL[OSE",)),
        ("close_call", ("CLOSE]",)),
        ("call_tag", ("CALL#",)),
        ("call_word", ("Call\nNo",)),
        ("call_word", ("Call\tNo",)),
        ("my_calls", (5,)),
        ("my_calls", "MyCalls"),
        ("task_word", None),
        ("reply_prefix", ("Re:",)),
    ],
)
def test_invalid_keywords_raise_naming_the_slot(slot: str, value: object) -> None:
    with pytest.raises(KeywordError) as raised:
        default_keywords().replaced(**{slot: value})  # type: ignore[arg-type]
    assert raised.value.slot == slot
    assert slot in str(raised.value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, MailgateError)


@pytest.mark.parametrize(
    ("aliases", "slot"),
    [
        ({**default_keywords(), "close": ("CLOSE",)}, "close"),
        ({k: v for k, v in default_keywords().items() if k != "task_word"}, "task_word"),
    ],
)
def test_a_keyword_set_holds_exactly_the_slots_of_the_table(
    aliases: dict[str, tuple[str, ...]], slot: str
) -> None:
    with pytest.raises(KeywordError) as raised:
        Keywords(aliases)
    assert raised.value.slot == slot


@pytest.mark.parametrize(
    ("changes", "slot", "other"),
    [
        ({"close_call": ("CALL",)}, "call_tag", "close_call"),
        ({"approve_task": ("OK",), "reject_task": ("ok",)}, "reject_task", "approve_task"),
        ({"my_calls": ("Mine",), "my_tasks": ("mine",)}, "my_tasks", "my_calls"),
        ({"request_word": ("Call  No",)}, "request_word", "call_word"),
    ],
)
def test_colliding_keywords_raise_naming_both_slots(
    changes: dict[str, tuple[str, ...]], slot: str, other: str
) -> None:
    with pytest.raises(KeywordError) as raised:
        default_keywords().replaced(**changes)
    assert raised.value.slot == slot
    assert slot in str(raised.value) and other in str(raised.value)


def test_same_keyword_in_different_shapes_is_allowed() -> None:
    keywords = default_keywords().replaced(close_call=("MyCalls",), call_tag=("Call",))
    compile_keywords(keywords)
    assert parse_subject("[MyCalls#4]", keywords).intent is Intent.CLOSE_CALL
    assert parse_subject("[MyCalls]", keywords).intent is Intent.MY_CALLS
    assert parse_subject("[Call#4] Call 5", keywords).elements[1].intent is Intent.UPDATE_CALL


def test_keyword_slots_are_the_slots_of_every_keyword_set() -> None:
    slots = keyword_slots()
    assert slots[0] == "close_call" and "reply_prefix" in slots and len(slots) == 14
    assert tuple(default_keywords()) == slots
    assert all(default_keywords()[slot] for slot in slots)


def test_equal_keyword_sets_share_one_compiled_parser() -> None:
    first, second = (default_keywords().replaced(call_word=("Anruf",)) for _ in range(2))
    assert first is not second and _parser_for(first) is _parser_for(second)


# ---- the vocabulary: one table of elements, one copy of the default words -----------------------------

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rule-packs.md"


def written_in_shape(element: Element, keyword: str) -> str:
    """A subject holding the command of ``element``, with number 12 where its shape has one."""
    return {
        Shape.NUMBERED_TAG: f"Re: [{keyword}#12] printer",
        Shape.SUMMARY_TAG: f"Re: [{keyword}] printer",
        Shape.MENTION: f"Re: printer, {keyword} 12",
    }[element.shape]


@pytest.mark.parametrize("element", ELEMENTS, ids=[e.slot for e in ELEMENTS])
def test_every_element_of_the_table_is_read_in_its_shape_as_its_intent(element: Element) -> None:
    for keyword in default_keywords()[element.slot]:
        parsed = parse_subject(written_in_shape(element, keyword))
        expected_number = None if element.shape is Shape.SUMMARY_TAG else 12
        assert (parsed.intent, parsed.number, parsed.bracketed) == (
            element.intent,
            expected_number,
            element.shape is not Shape.MENTION,
        ), keyword


def test_keywords_without_a_pack_are_read_once_from_the_bundled_default_pack(tmp_path: Path) -> None:
    """The words used without a pack, by the default pack and by a pack extending nothing are one set."""
    path = rules_dir() / "default.yaml"
    written = load_yaml_text(path.read_text(encoding="utf-8"), str(path))["keywords"]
    assert dict(default_keywords()) == {slot: tuple(words) for slot, words in written.items()}
    assert default_keywords() is default_keywords()
    assert load_pack("default", rules_dir()).keywords == default_keywords()
    standalone = tmp_path / "standalone.yaml"
    standalone.write_text("rules:\n  - {name: ignore_all, outcome: ignored}\n", encoding="utf-8")
    assert load_pack(str(standalone), tmp_path).keywords is default_keywords()


def _literal_strings(node: ast.AST) -> frozenset[str] | None:
    """The strings of a tuple, list or set literal made only of strings (None for anything else)."""
    if not isinstance(node, ast.Tuple | ast.List | ast.Set) or not node.elts:
        return None
    values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return frozenset(v.casefold() for v in values) if len(values) == len(node.elts) else None


def test_no_python_module_holds_a_copy_of_the_default_keywords() -> None:
    """No list of a slot's default words is written in Python: rules/default.yaml is their one home."""
    defaults = {frozenset(w.casefold() for w in words): slot for slot, words in default_keywords().items()}
    copies = []
    for folder in ("engine", "connectors", "bench"):
        for module in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                strings = _literal_strings(node)
                if strings in defaults:
                    copies.append(f"{module.relative_to(ROOT)}:{node.lineno}: {defaults[strings]}")
    assert not copies, copies


_TABLE_ROW = re.compile(r"^\| `(?P<slot>[a-z_]+)` \| (?P<words>`[^|]*`) \|", re.MULTILINE)


def doc_section(title: str) -> str:
    """The text of docs/rule-packs.md from the heading ``title`` to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(f"\n{title}\n") + len(title) + 2 :]
    return re.split(r"^#{2,} ", section, maxsplit=1, flags=re.MULTILINE)[0]


def test_the_doc_shows_the_default_words_of_every_slot_as_the_default_pack_has_them() -> None:
    rows = {m["slot"]: m["words"] for m in _TABLE_ROW.finditer(doc_section("## Keywords"))}
    documented = {slot: tuple(re.findall(r"`([^`]+)`", words)) for slot, words in rows.items()}
    assert documented == dict(default_keywords())


_DIFF_BLOCK = re.compile(r"^```diff\n(.*?)^```", re.DOTALL | re.MULTILINE)


def adding_a_command() -> list[tuple[str, str, str]]:
    """The edits docs/rule-packs.md says a new command takes: (file, context lines, added lines)."""
    edits = []
    for block in _DIFF_BLOCK.findall(doc_section("### Adding a subject command (for developers)")):
        header, *lines = block.splitlines()
        context = "".join(line[1:] + "\n" for line in lines if line.startswith(" "))
        added = "".join(line[1:] + "\n" for line in lines if line.startswith("+"))
        edits.append((header.removeprefix("# file: "), context, added))
    return edits


ADDED_COMMAND_CHECK = """
import sys
from pathlib import Path
from engine.rules import subject
from engine.rules.pack import load_pack
from engine.resources import rules_dir
assert Path(subject.__file__).is_relative_to(Path.cwd()), subject.__file__
parsed = subject.parse_subject("AW: [ reopen # 12 ] printer")
print(parsed.intent, parsed.number, parsed.bracketed)
print(load_pack("default", rules_dir()).keywords["reopen_call"])
print(load_pack(sys.argv[1], Path.cwd()).rules[0].name)
"""


def test_adding_a_command_takes_five_lines_in_the_grammar_the_table_and_the_default_pack(
    tmp_path: Path,
) -> None:
    """The doc's edits for [REOPEN#n], applied to a copy of mailgate, are all the copy needs to read it."""
    assert parse_subject("[REOPEN#12]").intent is Intent.UNRECOGNISED
    edits = adding_a_command()
    assert {file for file, _, _ in edits} == {
        "grammars/subject.lark",
        "engine/rules/vocabulary.py",
        "rules/default.yaml",
    }
    assert sum(added.count("\n") for _, _, added in edits) == 5
    copy = tmp_path / "mailgate"
    for folder in ("engine", "connectors", "grammars", "rules"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file, context, added in edits:
        target = copy / file
        text = target.read_text(encoding="utf-8")
        assert text.count(context) == 1, f"{file}: the doc's context lines are not found once:\n{context}"
        target.write_text(text.replace(context, context + added), encoding="utf-8")
    pack = tmp_path / "reopen.yaml"
    rule = "{name: reopen_by_mail, when: {intent: reopen_call}, outcome: ignored}"
    pack.write_text(f"extends: default\nrules:\n  - {rule}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", ADDED_COMMAND_CHECK, str(pack)],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["reopen_call 12 True", "('REOPEN',)", "reopen_by_mail"]


def test_a_grammar_terminal_without_a_row_in_the_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    grammar = subject_module._grammar_text()
    with_orphan = grammar.replace("| _TEXT", "| ORPHAN\n        | _TEXT") + 'ORPHAN.3: "[ORPHAN]"\n'
    monkeypatch.setattr(subject_module, "_grammar_text", lambda: with_orphan)
    _parser_for.cache_clear()
    try:
        with pytest.raises(KeywordError, match="ORPHAN"):
            compile_keywords(default_keywords())
    finally:
        _parser_for.cache_clear()


# ---- robustness ------------------------------------------------------------------------------------

FRAGMENTS = [
    "[", "]", "#", ":", " ", "\t", "\r\n ", "0", "1", "12", "007", "-", ".", "/", "(", ")", "Re", "AW",
    "[2]", "CLOSE", "close", "APPROVE", "MyCalls", "CALL", "REQ", "TASK", "Call", "No", "No.", "Request",
    "Task", "Approval", "Task/Approval", "x", "ä", "ß", "€", "😀", "\x00", "\x1b", "\u200b", "\u00a0",
    "\udcff", "\ufeff", "\u2028",
]  # fmt: skip


def random_subjects(count: int) -> list[str]:
    """Seeded random subjects: half glued from keyword fragments, half random code points."""
    generator = random.Random(20240601)
    subjects = []
    for index in range(count):
        length = generator.randint(0, 40)
        if index % 2:
            subjects.append("".join(chr(generator.randrange(0x110000)) for _ in range(length)))
        else:
            subjects.append("".join(generator.choice(FRAGMENTS) for _ in range(length)))
    return subjects


def test_random_subjects_never_raise() -> None:
    for subject in random_subjects(3000):
        assert_well_formed(subject, parse_subject(subject))


def test_grammar_accepts_every_random_subject_without_the_fallback() -> None:
    parser = _parser_for(default_keywords())
    for subject in random_subjects(3000):
        assert isinstance(parser.parse(subject), ParsedSubject)


@pytest.mark.parametrize(
    "subject",
    [
        "x" * 10_000 + " [CLOSE#5]",
        "[" * 10_000,
        "Call " * 2_000 + "5",
        "Re: " * 2_500 + "[CLOSE#5]",
        "[CLOSE#" + "0" * 5_000 + "5]",
        "Call " + " " * 10_000 + "x",
        "".join(chr(c) for c in range(1, 10_000)),
    ],
)
def test_huge_subjects_never_raise(subject: str) -> None:
    assert_well_formed(subject, parse_subject(subject))


def test_huge_subject_still_finds_its_command() -> None:
    parsed = parse_subject("Re: " * 2_500 + "word " * 2_000 + "[CLOSE#5]")
    assert (parsed.intent, parsed.number, len(parsed.prefixes)) == (Intent.CLOSE_CALL, 5, 2_500)


if HAVE_HYPOTHESIS:

    @settings(max_examples=500, deadline=None)
    @given(st.text())
    def test_any_text_never_raises(subject: str) -> None:
        assert_well_formed(subject, parse_subject(subject))

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=30).map("".join))
    def test_any_mix_of_keyword_fragments_never_raises(subject: str) -> None:
        assert_well_formed(subject, parse_subject(subject))


@pytest.mark.parametrize(
    "subject",
    ["[CLOSE#2147483648]", "[CALL#99999999999] more", "please call 4155550123", "Task 000002147483648"],
)
def test_a_number_larger_than_any_item_can_have_is_ordinary_text(subject: str) -> None:
    """Item numbers are 32-bit columns on PostgreSQL: a longer one is a phone number, never an item."""
    parsed = parse_subject(subject)
    assert parsed.intent is Intent.UNRECOGNISED
    assert_well_formed(subject, parsed)


def test_the_largest_item_number_is_still_a_number() -> None:
    parsed = parse_subject("[CLOSE#2147483647] [CALL#2147483648]")
    assert (parsed.intent, parsed.number) == (Intent.CLOSE_CALL, 2147483647)
    assert parse_subject("[CALL#2147483648] [CLOSE#12]").number == 12

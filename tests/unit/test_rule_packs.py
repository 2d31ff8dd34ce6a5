"""Rule packs: good packs load, bad packs are refused with every mistake at its line and column.

Each file in ``tests/fixtures/packs/bad/`` starts with one or more ``# expect:`` comments:
``# expect: [FILE ]LINE:COL FRAGMENT``. The pack must be refused; each expectation must match a
problem (in FILE, the bad file itself unless named), and every problem must be expected, so a
mistake reported twice, or a phantom mistake caused by another one, fails the test too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.actions.registry import action_class, action_names
from engine.config.checking import check_all
from engine.config.model import load_config
from engine.config.yaml_source import load_yaml_text
from engine.errors import ConfigError, Problem
from engine.resources import bundled_pack_names, rules_dir
from engine.rules.facts import FACTS, FactValue
from engine.rules.pack import OUTCOMES, RulePack, load_pack
from engine.rules.subject import Intent, default_keywords, keyword_slots, parse_subject
from engine.runtime import Runtime

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "packs"
GOOD = sorted((PACKS / "good").glob("*.yaml"))
BAD = sorted((PACKS / "bad").glob("*.yaml"))
DOC = Path(__file__).resolve().parents[2] / "docs" / "rule-packs.md"

_EXPECT = re.compile(r"^# expect: (?:(?P<file>\S+\.ya?ml) )?(?P<line>\d+):(?P<col>\d+) (?P<fragment>.+)$")


@dataclass(frozen=True)
class Expected:
    """One ``# expect:`` line of a bad fixture."""

    file: Path
    line: int
    col: int
    fragment: str

    def matches(self, problem: Problem) -> bool:
        """Whether a reported problem is this one."""
        return (
            Path(problem.file).resolve() == self.file
            and (problem.line, problem.col) == (self.line, self.col)
            and self.fragment in problem.message
        )

    def __str__(self) -> str:
        return f"{self.file.name}:{self.line}:{self.col}: ...{self.fragment}..."


def read_expectations(path: Path) -> list[Expected]:
    """The ``# expect:`` lines at the top of a bad fixture."""
    expected = []
    for text in path.read_text(encoding="utf-8").splitlines():
        found = _EXPECT.match(text)
        if found is None:
            break
        file = path.parent / found["file"] if found["file"] else path
        expected.append(Expected(file.resolve(), int(found["line"]), int(found["col"]), found["fragment"]))
    return expected


def load(path: Path) -> RulePack:
    """Load a pack file with the real loader."""
    return load_pack(str(path.resolve()), path.parent)


def make_facts(**overrides: FactValue) -> dict[str, FactValue]:
    """A full set of facts (a known sender, nothing special) with some changed; dots written as __."""
    facts: dict[str, FactValue] = {}
    for name, spec in FACTS.items():
        facts[name] = None if spec.nullable else False if spec.kind is bool else spec.choices[0]
    facts.update({"sender.known": True, "flags.auto_reply": True, "flags.truncate_incoming_emails": True})
    for key, value in overrides.items():
        name = key.replace("__", ".")
        assert name in FACTS, name
        facts[name] = value
    return facts


# ---- good and bad fixtures ---------------------------------------------------------------------


def test_the_fixture_folders_are_not_empty() -> None:
    """The parametrized tests below would pass vacuously without files."""
    assert len(GOOD) >= 5 and len(BAD) >= 25


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_pack_loads(path: Path) -> None:
    """Every good fixture loads and has rules."""
    pack = load(path)
    assert pack.rules
    assert pack.path == path.resolve()


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_pack_is_refused_with_each_expected_problem(path: Path) -> None:
    """Every bad fixture is refused, each mistake at its expected place, and nothing else reported."""
    expected = read_expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as refused:
        load(path)
    problems = refused.value.problems
    shown = "\n".join(str(p) for p in problems)
    for expectation in expected:
        assert any(expectation.matches(p) for p in problems), f"missing {expectation}; got:\n{shown}"
    for problem in problems:
        assert any(e.matches(problem) for e in expected), f"unexpected {problem}; got:\n{shown}"


def test_expectation_lines_are_read_as_written() -> None:
    """The fixture format itself: an optional file name, then line:col and the message fragment."""
    cycle = read_expectations(PACKS / "bad" / "extends_cycle_b.yaml")
    assert [(e.file.name, e.line, e.col) for e in cycle] == [("extends_cycle_a.yaml", 2, 10)]
    several = read_expectations(PACKS / "bad" / "several_mistakes.yaml")
    assert len(several) == 9 and all(e.file.name == "several_mistakes.yaml" for e in several)


# ---- bundled packs -----------------------------------------------------------------------------


def test_bundled_packs_are_default_and_de_strict() -> None:
    """Both bundled packs ship."""
    assert {"default", "de-strict"} <= set(bundled_pack_names())


@pytest.mark.parametrize("name", bundled_pack_names())
def test_bundled_pack_loads(name: str, tmp_path: Path) -> None:
    """Every bundled pack passes validation by name."""
    pack = load_pack(name, tmp_path)
    assert pack.path == (rules_dir() / f"{name}.yaml").resolve()
    assert pack.rules


def test_mailgate_check_passes_on_the_bundled_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mailgate check`` without a config validates the bundled packs and finds nothing wrong."""
    monkeypatch.chdir(tmp_path)
    lines = check_all(tmp_path / "mailgate.yaml")
    assert any("rule pack de-strict" in line for line in lines)
    assert any("rule pack default" in line for line in lines)


# ---- extends: keywords, templates and rule order ------------------------------------------------


def _snapshot(pack: RulePack) -> dict[str, Any]:
    return {
        "rules": [(r.name, r.outcome, r.where, len(r.steps)) for r in pack.rules],
        "keywords": pack.keywords,
        "templates": {k: (t.subject_source, t.body_source, t.where) for k, t in pack.templates.items()},
    }


def test_child_overrides_a_keyword_a_template_and_inserts_a_rule_leaving_the_parent_untouched(
    tmp_path: Path,
) -> None:
    """The child's slot, template and ``before:`` rule take effect; the default pack is unchanged."""
    default_before = _snapshot(load_pack("default", tmp_path))
    child = load(PACKS / "good" / "child_overrides.yaml")
    default_after = load_pack("default", tmp_path)

    assert _snapshot(default_after) == default_before
    assert default_after.keywords["close_call"] == ("CLOSE",)

    parent_names = [r.name for r in default_after.rules]
    expected = parent_names[:]
    expected.insert(parent_names.index("log_new_call"), "ignore_newsletters")
    assert [r.name for r in child.rules] == expected

    assert child.keywords["close_call"] == ("CLOSE", "SCHLIESSEN")
    for slot in keyword_slots():
        if slot != "close_call":
            assert child.keywords[slot] == default_after.keywords[slot]
    assert parse_subject("AW: [SCHLIESSEN#4]", child.keywords).intent is Intent.CLOSE_CALL
    assert parse_subject("AW: [SCHLIESSEN#4]", default_after.keywords).intent is Intent.UNRECOGNISED

    assert child.templates["call_logged"].subject_source == "We have logged your call {{ number }}"
    assert (
        default_after.templates["call_logged"].subject_source == default_before["templates"]["call_logged"][0]
    )
    assert (
        default_after.templates["call_logged"].subject_source != child.templates["call_logged"].subject_source
    )
    for name in default_after.templates:
        if name != "call_logged":
            assert child.templates[name].body_source == default_after.templates[name].body_source
    assert child.parents == (default_after.path,)


def test_merge_places_removed_replaced_front_and_anchored_rules() -> None:
    """remove, replace in place, new rules in front, after/before (also naming a rule placed later)."""
    pack = load(PACKS / "good" / "merge_mechanics.yaml")
    assert [r.name for r in pack.rules] == [
        "first_new",
        "after_one",
        "anchored_to_anchored",
        "after_two",
        "log_everything",
    ]
    replaced = pack.rules[-1]
    assert replaced.where.startswith(str((PACKS / "good" / "merge_mechanics.yaml").resolve()))
    assert len(replaced.steps) == 1


def test_a_rule_with_a_parent_rules_name_and_an_anchor_moves_and_replaces_it(tmp_path: Path) -> None:
    """Replacing a rule and moving it with ``before:`` leaves exactly one rule of that name."""
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: default\n"
        "rules:\n"
        "  - name: log_new_call\n"
        "    before: delete_fatal_bounce\n"
        "    when: {intent: unrecognised}\n"
        "    outcome: ignored\n",
        encoding="utf-8",
    )
    names = [r.name for r in load(child).rules]
    assert names[0] == "log_new_call" and names.count("log_new_call") == 1
    assert len(names) == len(load_pack("default", tmp_path).rules)


def test_three_levels_of_extends_see_every_parent() -> None:
    """A pack extending de-strict gets default's rules through it and records both parents."""
    pack = load(PACKS / "good" / "bundled_child_of_child.yaml")
    assert [p.name for p in pack.parents] == ["de-strict.yaml", "default.yaml"]
    assert pack.keywords["close_call"] == ("CLOSE", "SCHLIESSEN")
    assert pack.keywords["my_calls"] == ("MyCalls", "MeineMeldungen", "MeineTickets")
    names = [r.name for r in pack.rules]
    assert names.index("unknown_sender_ignored") == 1


def test_extends_by_name_finds_a_pack_beside_it_first(tmp_path: Path) -> None:
    """``extends: NAME`` looks beside the pack before the bundled packs."""
    (tmp_path / "base.yaml").write_text("rules:\n  - {name: only, outcome: ignored}\n", encoding="utf-8")
    (tmp_path / "child.yaml").write_text("extends: base\n", encoding="utf-8")
    assert [r.name for r in load(tmp_path / "child.yaml").rules] == ["only"]


def test_a_local_pack_named_default_may_extend_the_bundled_default(tmp_path: Path) -> None:
    """``rules/default.yaml`` saying ``extends: default`` builds on the bundled pack, not on itself."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(
        "extends: default\nrules:\n  - {name: local_first, outcome: ignored}\n", encoding="utf-8"
    )
    pack = load_pack("default", tmp_path)
    assert pack.path == (tmp_path / "rules" / "default.yaml").resolve()
    assert pack.parents == ((rules_dir() / "default.yaml").resolve(),)
    assert pack.rules[0].name == "local_first"


def test_a_broken_parent_is_reported_in_its_own_file_without_phantom_mistakes_in_the_child(
    tmp_path: Path,
) -> None:
    """The child's anchors, removals and templates that name the parent's things are not blamed."""
    parent = tmp_path / "parent.yaml"
    parent.write_text(
        "templates:\n"
        "  hello: {subject: 'Hi', body: 'Hello'}\n"
        "rules:\n"
        "  - name: greet\n"
        "    when: {intnt: unrecognised}\n"
        "    outcome: ignored\n",
        encoding="utf-8",
    )
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: parent\n"
        "remove: [greet]\n"
        "rules:\n"
        "  - name: answer\n"
        "    before: greet\n"
        "    outcome: refused\n"
        "    then: [{do: reply, template: hello}]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load(child)
    assert [(Path(p.file).name, p.line, p.col) for p in refused.value.problems] == [("parent.yaml", 5, 12)]


# ---- the cache ----------------------------------------------------------------------------------


def _bump_mtime(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


def test_the_pack_cache_sees_changes_to_the_pack_and_to_its_parent(tmp_path: Path) -> None:
    """An unchanged pack comes from the cache; editing it, or the pack it extends, reloads it."""
    parent = tmp_path / "parent.yaml"
    child = tmp_path / "child.yaml"
    parent.write_text("rules:\n  - {name: p1, outcome: ignored}\n", encoding="utf-8")
    child.write_text("extends: parent\nrules:\n  - {name: c1, outcome: ignored}\n", encoding="utf-8")
    first = load(child)
    assert load(child) is first
    assert [r.name for r in first.rules] == ["c1", "p1"]

    child.write_text(
        "extends: parent\nrules:\n  - {name: c1, outcome: ignored}\n  - {name: c2, outcome: ignored}\n",
        encoding="utf-8",
    )
    _bump_mtime(child, 1)
    assert [r.name for r in load(child).rules] == ["c1", "c2", "p1"]

    parent.write_text("rules:\n  - {name: p1, outcome: ignored}\n  - {name: p2, outcome: ignored}\n")
    _bump_mtime(parent, 1)
    assert [r.name for r in load(child).rules] == ["c1", "c2", "p1", "p2"]

    parent.write_text("rules:\n  - {name: p1, outcome: nonsense}\n", encoding="utf-8")
    _bump_mtime(parent, 2)
    with pytest.raises(ConfigError):
        load(child)


# ---- how a pack decides ---------------------------------------------------------------------------


def test_the_first_matching_rule_wins() -> None:
    """Order decides: the standalone pack ignores machines before it logs everything."""
    pack = load(PACKS / "good" / "standalone.yaml")
    machine = pack.decide(make_facts(message__auto_submitted=True))
    person = pack.decide(make_facts())
    assert machine is not None and machine.name == "ignore_machines"
    assert person is not None and person.name == "log_everything"


def test_every_condition_form_decides_as_documented() -> None:
    """Values, lists, {not: x}, null, and nested any/all/not each select the rule they describe."""
    pack = load(PACKS / "good" / "every_condition_form.yaml")

    def chosen(**facts: FactValue) -> str | None:
        rule = pack.decide(make_facts(**facts))
        return rule.name if rule else None

    assert chosen(intent="my_calls") == "value"
    assert chosen(message__bounce_code=451) == "list_of_values"
    assert chosen(intent="close_call", target__status="closed") == "negated_value"
    assert chosen(intent="close_call", target__status="open") != "negated_value"
    assert chosen(intent="update_call", target__kind="task") == "negated_list"
    assert chosen(intent="update_call", target__kind=None) != "negated_list"
    assert chosen(number=None, intent="unrecognised") == "null_value"
    analyst: dict[str, FactValue] = {
        "intent": "update_task",
        "sender__is_analyst": True,
        "sender__take_over": True,
    }
    assert chosen(**analyst) == "any_all_not"
    assert chosen(**analyst, flags__auto_reply=False) != "any_all_not"
    user: dict[str, FactValue] = {
        "intent": "update_task",
        "sender__is_user": True,
        "sender__is_target_user": True,
    }
    assert chosen(**user) == "any_all_not"
    assert chosen(**{**user, "sender__is_target_user": False}) != "any_all_not"


STRICT_CASES = [
    (
        "fatal bounce from the mailer daemon",
        {"sender__known": False, "message__is_bounce": True, "message__bounce_code": 550},
        "delete_fatal_bounce",
        "bounce_deleted",
    ),
    ("unknown sender, new mail", {"sender__known": False}, "unknown_sender_ignored", "ignored"),
    (
        "unknown sender closes with the flag on",
        {
            "sender__known": False,
            "intent": "close_call",
            "number": 3,
            "target__exists": True,
            "flags__close_calls_anonymously": True,
        },
        "unknown_sender_ignored",
        "ignored",
    ),
    (
        "unknown sender updates with the flag on",
        {
            "sender__known": False,
            "intent": "update_call",
            "number": 3,
            "target__exists": True,
            "flags__update_calls_anonymously": True,
        },
        "unknown_sender_ignored",
        "ignored",
    ),
    (
        "unknown sender approves",
        {
            "sender__known": False,
            "intent": "approve_task",
            "number": 7,
            "target__exists": True,
            "target__is_approval": True,
        },
        "unknown_sender_ignored",
        "ignored",
    ),
    (
        "unknown sender asks for a summary",
        {"sender__known": False, "intent": "my_calls"},
        "unknown_sender_ignored",
        "ignored",
    ),
    (
        "known user closes their call",
        {
            "intent": "close_call",
            "number": 3,
            "target__exists": True,
            "sender__is_user": True,
            "sender__is_target_user": True,
        },
        "close_call",
        "closed",
    ),
    (
        "known stranger closes someone's call",
        {"intent": "close_call", "number": 3, "target__exists": True, "sender__is_user": True},
        "close_insufficient_permission",
        "refused",
    ),
    (
        "out-of-office note from a known sender",
        {"message__auto_submitted": True},
        "automatic_mail_not_logged",
        "ignored",
    ),
    ("new mail from a known sender", {}, "log_new_call", "logged"),
]


@pytest.mark.parametrize(
    ("facts", "rule", "outcome"), [c[1:] for c in STRICT_CASES], ids=[c[0] for c in STRICT_CASES]
)
def test_de_strict_accepts_nothing_anonymous(facts: dict[str, FactValue], rule: str, outcome: str) -> None:
    """de-strict ignores unknown senders whatever the flags say, and still deletes fatal bounces first."""
    chosen = load_pack("de-strict", rules_dir()).decide(make_facts(**facts))
    assert chosen is not None and (chosen.name, chosen.outcome) == (rule, outcome)


def test_de_strict_reads_german_subjects_and_keeps_the_english_ones() -> None:
    """German keywords work beside the English ones; the default pack does not know the German ones."""
    keywords = load_pack("de-strict", rules_dir()).keywords
    for subject, intent, number in [
        ("AW: [SCHLIESSEN#12] Drucker", Intent.CLOSE_CALL, 12),
        ("Re: [CLOSE#12]", Intent.CLOSE_CALL, 12),
        ("[GENEHMIGEN#7]", Intent.APPROVE_TASK, 7),
        ("[ABLEHNEN#7]", Intent.REJECT_TASK, 7),
        ("WG: Meldung Nr. 5", Intent.UPDATE_CALL, 5),
        ("Anruf 5", Intent.UPDATE_CALL, 5),
        ("Antwort: Antrag 3", Intent.UPDATE_REQUEST, 3),
        ("[MeineMeldungen]", Intent.MY_CALLS, None),
    ]:
        parsed = parse_subject(subject, keywords)
        assert (parsed.intent, parsed.number) == (intent, number), subject
    assert parse_subject("[SCHLIESSEN#12]", default_keywords()).intent is Intent.UNRECOGNISED


def test_de_strict_translates_every_template_of_the_default_pack() -> None:
    """No English text can reach a user of de-strict: every default template is overridden."""
    strict = load_pack("de-strict", rules_dir())
    default = load_pack("default", rules_dir())
    assert set(strict.templates) == set(default.templates)
    for name, template in strict.templates.items():
        assert template.where.startswith(str(strict.path)), name


# ---- the admin documentation ------------------------------------------------------------------------

_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def doc_yaml_blocks() -> list[str]:
    """Every ```yaml block of docs/rule-packs.md."""
    return _YAML_BLOCK.findall(DOC.read_text(encoding="utf-8"))


def _is_full_pack(block: str) -> bool:
    first = next((line for line in block.splitlines() if line.strip() and not line.startswith("#")), "")
    return first.startswith(("extends:", "name:"))


def test_every_yaml_block_in_the_doc_is_valid_yaml() -> None:
    """Snippets an admin copies must at least parse."""
    blocks = doc_yaml_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        load_yaml_text(block, str(DOC))


def test_every_full_pack_in_the_doc_loads(tmp_path: Path) -> None:
    """Blocks that start with ``extends:`` or ``name:`` are whole packs and pass the real loader."""
    packs = [b for b in doc_yaml_blocks() if _is_full_pack(b)]
    assert len(packs) >= 8
    for index, block in enumerate(packs):
        path = tmp_path / f"doc_{index}.yaml"
        path.write_text(block, encoding="utf-8")
        try:
            load(path)
        except ConfigError as exc:
            pytest.fail(f"doc pack #{index} is refused:\n{exc}\n---\n{block}")


def _module_of(action: str) -> str:
    cls = action_class(action)
    return cls.__module__ if cls else ""


def test_the_doc_names_every_fact_action_outcome_and_keyword_slot() -> None:
    """The reference tables stay complete as the vocabulary grows."""
    text = DOC.read_text(encoding="utf-8")
    built_in = [n for n in action_names() if _module_of(n).startswith("engine.")]  # not tests' or plugins'
    assert "reply" in built_in
    vocabulary = [*FACTS, *built_in, *OUTCOMES, *keyword_slots()]
    missing = [word for word in vocabulary if f"`{word}`" not in text]
    assert not missing, f"docs/rule-packs.md does not mention: {missing}"


def test_every_config_in_the_doc_loads_with_its_packs(tmp_path: Path) -> None:
    """Blocks that start with ``# mailgate.yaml`` are whole configs and pass the config loader."""
    configs = [b for b in doc_yaml_blocks() if b.startswith("# mailgate.yaml")]
    assert configs
    for index, block in enumerate(configs):
        path = tmp_path / f"config_{index}" / "mailgate.yaml"
        path.parent.mkdir()
        path.write_text(block, encoding="utf-8")
        Runtime(load_config(path), open_db=False)


def test_explain_describes_a_list_of_values_as_membership() -> None:
    from engine.rules.conditions import FactTest, first_failing

    among = FactTest("intent", ("approve_task", "reject_task"))
    assert among.describe() == "intent in ['approve_task', 'reject_task']"
    assert FactTest("intent", ("approve_task", "reject_task"), negate=True).describe() == (
        "intent not in ['approve_task', 'reject_task']"
    )
    assert FactTest("sender.known", (True,)).describe() == "sender.known == True"
    assert FactTest("sender.known", (True,), negate=True).describe() == "sender.known != True"
    assert first_failing(among, {"intent": "new_call"}) == "intent in ['approve_task', 'reject_task']"


def test_loading_the_default_pack_parses_its_file_once_and_keeps_the_default_keywords(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from engine.rules import pack as pack_module
    from engine.rules import vocabulary

    parsed: list[Path] = []

    def counting_load(path: Path) -> Any:
        parsed.append(path)
        return load_yaml_text(path.read_text(encoding="utf-8"), str(path))

    monkeypatch.setattr(pack_module, "load_pack_yaml_file", counting_load)
    monkeypatch.setattr(vocabulary, "load_pack_yaml_file", counting_load)
    vocabulary.default_keywords.cache_clear()
    monkeypatch.setattr(pack_module, "_CACHE", {})
    try:
        pack = load_pack("default", tmp_path)
        assert [p.resolve() for p in parsed] == [(rules_dir() / "default.yaml").resolve()]  # not twice
        assert dict(pack.keywords) == dict(default_keywords())
    finally:
        vocabulary.default_keywords.cache_clear()


def test_a_traced_decision_names_the_innermost_failing_part_of_each_rule_it_tried() -> None:
    import dataclasses

    from engine.rules.conditions import AllOf, AnyOf, FactTest, Not
    from engine.rules.pack import RuleTried

    default = load_pack("default", rules_dir())

    def rule(name: str, when: Any) -> Any:
        return dataclasses.replace(default.rules[0], name=name, when=when)

    known, closing = FactTest("sender.known", (True,)), FactTest("intent", ("close_call",))
    either = AnyOf((FactTest("sender.is_analyst", (True,)), FactTest("sender.owns_target", (True,))))
    pack = dataclasses.replace(
        default,
        rules=(
            rule("nested", AllOf((known, AllOf((closing, either))))),
            rule("negated", AllOf((known, Not(FactTest("target.exists", (True,)))))),
            rule("any", either),
            rule("fallback", AllOf(())),
        ),
    )
    facts = {"sender.known": True, "intent": "close_call", "sender.is_analyst": False}
    facts |= {"sender.owns_target": False, "target.exists": True}
    tried: list[RuleTried] = []

    chosen = pack.decide(facts, tried)

    assert chosen is not None and chosen.name == "fallback" and pack.decide(facts) is chosen
    assert tried == [
        RuleTried("nested", False, "fails: (sender.is_analyst == True or sender.owns_target == True)"),
        RuleTried("negated", False, "fails: not (target.exists == True)"),
        RuleTried("any", False, "fails: (sender.is_analyst == True or sender.owns_target == True)"),
        RuleTried("fallback", True),
    ]


def test_a_pack_chooses_once_for_each_set_of_values_of_the_facts_it_reads() -> None:
    from engine.rules.pack import RuleTried

    pack = load_pack("default", rules_dir())
    assert "intent" in pack.facts_read and "number" not in pack.facts_read
    seventeen = make_facts(intent="update_call", number=17)
    eighteen = make_facts(intent="update_call", number=18)
    tried: list[RuleTried] = []
    rule = pack.decide(seventeen, tried)

    choice = pack.choose(seventeen)

    assert choice.rule is rule and list(choice.tried) == tried
    assert rule is not None and choice.steps == tuple((s, s.when.holds(seventeen)) for s in rule.steps)
    assert pack.choose(eighteen) is choice  # a fact no condition reads changes nothing
    assert pack.choose(make_facts(intent="close_call", number=17)).rule is pack.decide(
        make_facts(intent="close_call", number=17)
    )
    assert pack.choose(make_facts(intent="close_call", number=17)) is not choice


def test_choices_that_tried_the_same_rules_alike_share_one_list_of_rules_tried() -> None:
    pack = load_pack("default", rules_dir())
    updating = make_facts(intent="update_call", target__exists=True)
    # read only by the close_call rules, which fail on their intent first
    other = {**updating, "flags.close_calls_anonymously": not updating["flags.close_calls_anonymously"]}

    first, second = pack.choose(updating), pack.choose(other)

    assert first is not second and first.rule is second.rule
    assert first.tried is second.tried

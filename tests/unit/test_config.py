"""mailgate.yaml: its shape is a contract; every mistake is refused at its line and column, all at once.

Good configs in ``tests/fixtures/configs/good/`` load (with their rule packs); each bad one in
``tests/fixtures/configs/bad/`` starts with ``# expect: [FILE ]LINE:COL FRAGMENT`` lines (FILE
relative to the config) and must be refused with exactly the expected problems. A config is
checked as ``mailgate check`` does: ``load_config`` and then ``Runtime(config, open_db=False)``,
which loads each account's rule pack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from connectors.registry import make_connector
from engine.commands.starter import STARTER_CONFIG, STARTER_PACK
from engine.config.authentication import AuthenticationSettings, DnsServer
from engine.config.database import DatabaseTimeouts
from engine.config.model import AccountConfig, CallTemplate, Config, Flags, load_config
from engine.errors import ConfigError, MailgateError, Problem, Span
from engine.rules.pack import load_pack
from engine.runtime import Runtime

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
GOOD = sorted((CONFIGS / "good").glob("*.yaml"))
BAD = sorted((CONFIGS / "bad").glob("*.yaml"))

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


def check_config(path: Path) -> Config:
    """Validate a config and its rule packs as ``mailgate check`` does, opening no database."""
    config = load_config(path)
    Runtime(config, open_db=False)
    if config.unset_secrets():  # check reports what `mailgate run` will need
        raise ConfigError(config.unset_secrets())
    return config


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixtures' ``${...}`` secrets: two set, one deliberately missing."""
    monkeypatch.setenv("MAILGATE_TEST_IMAP_PASSWORD", "imap-s3cret")
    monkeypatch.setenv("MAILGATE_TEST_DB_PASSWORD", "db-s3cret")
    monkeypatch.delenv("MAILGATE_TEST_UNSET_SECRET", raising=False)


def write_config(folder: Path, text: str) -> Path:
    """Write ``mailgate.yaml`` into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mailgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- good and bad fixtures ---------------------------------------------------------------------


def test_the_fixture_folders_are_not_empty() -> None:
    """The parametrized tests below would pass vacuously without files."""
    assert len(GOOD) >= 3 and len(BAD) >= 10


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_config_loads_with_its_rule_packs(path: Path) -> None:
    """Every good fixture passes, rule packs included."""
    config = check_config(path)
    assert config.path == path.resolve()


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_refused_with_each_expected_problem(path: Path) -> None:
    """Every bad fixture is refused, each mistake at its expected place, and nothing else reported."""
    expected = read_expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as refused:
        check_config(path)
    problems = refused.value.problems
    shown = "\n".join(str(p) for p in problems)
    for expectation in expected:
        assert any(expectation.matches(p) for p in problems), f"missing {expectation}; got:\n{shown}"
    for problem in problems:
        assert any(e.matches(problem) for e in expected), f"unexpected {problem}; got:\n{shown}"


# ---- the contract: defaults and every key -------------------------------------------------------


def test_omitted_keys_take_their_defaults() -> None:
    """Only a name given: folder connector, default pack, flags off except auto_reply and truncation."""
    config = check_config(CONFIGS / "good" / "minimal.yaml")
    assert config.database == f"sqlite:///{(CONFIGS / 'good' / 'mailgate.sqlite').resolve()}"
    assert (config.product_name, config.email_at_update_via_email_in) == ("mailgate", False)
    assert config.time_limit_seconds == 30.0
    (account,) = config.accounts
    assert account == AccountConfig(name="helpdesk", connector={"type": "folder"}, rule_pack="default")
    flags_on = {f.name for f in fields(Flags) if getattr(account.flags, f.name)}
    assert flags_on == {"auto_reply", "truncate_incoming_emails"}
    assert account.call_template == CallTemplate()
    assert all(getattr(account.call_template, f.name) is None for f in fields(CallTemplate))
    assert (account.default_logging_analyst, account.reopen_assign_to) == (None, "last_analyst")
    assert account.connector_type == "folder" and account.active


def test_every_key_of_the_contract_is_read() -> None:
    """database, product_name, messaging, accounts with connector, pack, flags, call template and the rest."""
    config = check_config(CONFIGS / "good" / "full.yaml")
    assert config.database == f"sqlite:///{(CONFIGS / 'good' / 'data' / 'mailgate.sqlite').resolve()}"
    assert config.product_name == "Example Service Desk"
    assert config.email_at_update_via_email_in is True
    assert (config.mail_domain, config.time_limit_seconds) == ("helpdesk.example.com", 12.5)
    helpdesk, archive = config.accounts
    assert helpdesk.connector == {
        "type": "imap",
        "host": "imap.example.com",
        "port": 993,
        "username": "helpdesk",
        "password": "imap-s3cret",
    }
    assert helpdesk.connector_type == "imap"
    assert helpdesk.rule_pack == "de-strict"
    assert helpdesk.flags == Flags(
        close_calls_anonymously=True,
        update_calls_anonymously=True,
        log_new_call_on_invalid_number=True,
        update_closed_calls=True,
        reopen_closed_calls=True,
        truncate_incoming_emails=False,
        auto_reply=False,
        use_linked_analyst=True,
        commands_require_authentication=True,
    )
    assert helpdesk.authentication == AuthenticationSettings(
        trusted_authserv_ids=("mx.example.com", "mx2.example.com"),
        trusted_relays=("*.internal.example.com", "10.0.0.0/8", "imap.example.com"),
        trusted_arc_sealers=("lists.example.org",),
        verify_dkim=True,
        dns_servers=(DnsServer("192.0.2.53"), DnsServer("192.0.2.54", 5353), DnsServer("2001:db8::53", 5353)),
    )
    assert archive.authentication == AuthenticationSettings()
    assert not archive.flags.commands_require_authentication
    assert helpdesk.call_template == CallTemplate(
        partition="IT",
        screen_set="Standard",
        ipk_status="New",
        ipk_stream="Incident",
        assigned_analyst="ana@example.com",
        assigned_group="First Line",
    )
    assert helpdesk.default_logging_analyst == "logger@example.com"
    assert helpdesk.reopen_assign_to == "template_group"
    assert helpdesk.address == "helpdesk@example.com"
    assert (archive.connector, archive.active) == ({"type": "folder"}, False)


def test_each_account_gets_the_rule_pack_it_names() -> None:
    """A bundled pack by name, a pack file by a path relative to the config."""
    runtime = Runtime(check_config(CONFIGS / "good" / "full.yaml"), open_db=False)
    assert runtime.packs["helpdesk"].name == "de-strict"
    assert runtime.packs["archive"].path == (CONFIGS.parent / "packs" / "good" / "standalone.yaml").resolve()


def test_a_local_pack_named_in_the_config_is_found_in_the_rules_folder(tmp_path: Path) -> None:
    """``rule_pack: local`` means ``rules/local.yaml`` beside the config."""
    path = write_config(tmp_path, "accounts:\n  - {name: helpdesk, rule_pack: local}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "local.yaml").write_text(STARTER_PACK, encoding="utf-8")
    runtime = Runtime(load_config(path), open_db=False)
    assert runtime.packs["helpdesk"].path == (tmp_path / "rules" / "local.yaml").resolve()


def test_the_starter_config_written_by_mailgate_init_is_valid(tmp_path: Path) -> None:
    """What ``mailgate init`` writes passes the same validation."""
    path = write_config(tmp_path, STARTER_CONFIG)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "local.yaml").write_text(STARTER_PACK, encoding="utf-8")
    config = check_config(path)
    assert [a.name for a in config.accounts] == ["helpdesk"]
    assert config.accounts[0].flags == Flags(commands_require_authentication=True)
    assert config.accounts[0].authentication == AuthenticationSettings()


# ---- secrets from the environment ----------------------------------------------------------------


def test_a_secret_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${NAME}`` and ``${env:NAME}`` are replaced by the variable's value, also inside longer text."""
    monkeypatch.setenv("MAILGATE_TEST_USER", "desk")
    path = write_config(
        tmp_path,
        "database: postgresql://${MAILGATE_TEST_USER}:${env:MAILGATE_TEST_DB_PASSWORD}@db/mailgate\n"
        "accounts:\n"
        "  - name: helpdesk\n"
        "    connector: {type: pop3, host: pop.example.com, username: desk,"
        " password: '${MAILGATE_TEST_IMAP_PASSWORD}'}\n",
    )
    config = load_config(path)
    assert config.database == "postgresql://desk:db-s3cret@db/mailgate"
    assert config.accounts[0].connector["password"] == "imap-s3cret"


def test_a_missing_secret_is_refused_at_its_place_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable is a mistake at the value that names it, never an empty password.

    Reading the config does not need it (read-only commands run without the service's secrets);
    making the connector that uses it does.
    """
    monkeypatch.delenv("MAILGATE_TEST_UNSET", raising=False)
    path = write_config(
        tmp_path,
        "accounts:\n  - name: helpdesk\n    connector:\n"
        "      type: imap\n      password: ${MAILGATE_TEST_UNSET}\n",
    )
    config = load_config(path)
    assert [(p.line, p.col, p.message) for p in config.unset_secrets()] == [
        (5, 17, "environment variable MAILGATE_TEST_UNSET is not set")
    ]
    with pytest.raises(ConfigError) as refused:
        make_connector("helpdesk", config.accounts[0].connector, tmp_path)
    assert [(p.line, p.col, p.message) for p in refused.value.problems] == [
        (
            5,
            17,
            "environment variable MAILGATE_TEST_UNSET is not set: account 'helpdesk''s connector needs it",
        )
    ]


# ---- SQLite paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("sqlite:///mailgate.sqlite", "sqlite:///{base}/mailgate.sqlite"),
        ("sqlite:///data/mail.db", "sqlite:///{base}/data/mail.db"),
        ("sqlite:///../shared/mail.db", "sqlite:///{parent}/shared/mail.db"),
        ("sqlite+pysqlite:///mail.db", "sqlite+pysqlite:///{base}/mail.db"),
        ("sqlite:////var/lib/mailgate/mail.db", "sqlite:////var/lib/mailgate/mail.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://db/mailgate", "postgresql://db/mailgate"),
    ],
)
def test_relative_sqlite_paths_are_resolved_against_the_configs_folder(
    written: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where mailgate is started from does not move the database."""
    base = tmp_path / "site"
    path = write_config(base, f"database: '{written}'\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "site" / "mailgate.yaml")
    assert config.database == expected.format(base=base.resolve(), parent=tmp_path.resolve())
    assert config.path == path.resolve()


# ---- refusing whole ------------------------------------------------------------------------------


def test_an_unknown_rule_pack_is_reported_at_the_configs_rule_pack_key(tmp_path: Path) -> None:
    """The mistake is in the config, so the config's line and column are given, with the closest pack."""
    path = write_config(
        tmp_path, "accounts:\n  - name: a\n  - name: b\n    connector: folder\n    rule_pack: defualt\n"
    )
    config = load_config(path)
    with pytest.raises(ConfigError) as refused:
        Runtime(config, open_db=False)
    (problem,) = refused.value.problems
    assert (Path(problem.file), problem.line, problem.col) == (path.resolve(), 5, 16)
    assert "rule pack 'defualt' not found (did you mean 'default'?)" in problem.message


def test_an_unknown_rule_pack_is_placed_from_the_loaded_config_even_after_the_file_changes(
    tmp_path: Path,
) -> None:
    """Positions travel with the values: the file is not read again to find the ``rule_pack:`` key."""
    path = write_config(
        tmp_path, "accounts:\n  - name: a\n  - name: b\n    connector: folder\n    rule_pack: defualt\n"
    )
    config = load_config(path)
    path.write_text("# rewritten\n\n\naccounts: []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        Runtime(config, open_db=False)
    path.unlink()
    with pytest.raises(ConfigError) as refused_again:
        Runtime(config, open_db=False)
    for problem in (*refused.value.problems, *refused_again.value.problems):
        assert (Path(problem.file), problem.line, problem.col) == (path.resolve(), 5, 16)
        assert "rule pack 'defualt' not found" in problem.message


def test_the_config_keeps_where_each_key_was_written(tmp_path: Path) -> None:
    """Top-level keys, each account's keys and connector section, and each outgoing server's keys."""
    path = write_config(
        tmp_path,
        "# a comment first\n"
        "accounts:\n"
        "  - name: helpdesk\n"
        "    rule_pack: default\n"
        "    connector:\n"
        "      type: folder\n"
        "      path: inbox\n"
        "  - {name: second, address: second@example.com}\n"
        "database: sqlite:///x.sqlite\n"
        "outgoing:\n"
        "  servers:\n"
        "    - {name: main, host: localhost, from_address: desk@example.com}\n",
    )
    config = load_config(path)
    path.unlink()
    file = str(path.resolve())
    assert config.spans.of("database") == Span(file, 9, 11)
    assert config.spans.of("product_name") == Span(file, 1, 1)  # not written: the file itself
    assert config.spans.section("outgoing").of("servers") == Span(file, 12, 5)
    helpdesk, second = (config.account_spans(account) for account in config.accounts)
    assert helpdesk.of("name") == Span(file, 3, 11)
    assert helpdesk.of("rule_pack") == Span(file, 4, 16)
    assert helpdesk.section("connector").of("path") == Span(file, 7, 13)
    assert second.of("address") == Span(file, 8, 29)
    assert second.of("rule_pack") == Span(file, 8, 5)  # not written: the account itself
    assert second.section("connector").node == Span(file, 8, 5)
    assert config.spans.section("outgoing").section("servers").item(0).of("host") == Span(file, 12, 26)


def test_a_broken_config_never_opens_its_database(tmp_path: Path) -> None:
    """Runtime refuses before it creates anything: a bad pack in any account, no database file."""
    path = write_config(
        tmp_path,
        "database: sqlite:///state/mailgate.sqlite\n"
        "accounts:\n"
        "  - {name: good, rule_pack: default}\n"
        "  - {name: bad, rule_pack: no-such-pack}\n",
    )
    config = load_config(path)
    with pytest.raises(ConfigError):
        Runtime(config)
    assert not (tmp_path / "state" / "mailgate.sqlite").exists()
    assert not (tmp_path / "state").exists()


def test_a_config_with_any_mistake_is_refused_whole(tmp_path: Path) -> None:
    """One wrong flag among good settings: no Config at all, and every mistake listed."""
    path = write_config(
        tmp_path,
        "product_name: Desk\naccounts:\n  - name: a\n    flags: {auto_reply: maybe}\n  - name: a\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert [(p.line, p.col) for p in refused.value.problems] == [(4, 25), (5, 11)]


def test_a_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    """No traceback: a ConfigError pointing at ``mailgate init``."""
    with pytest.raises(ConfigError, match="mailgate init"):
        load_config(tmp_path / "mailgate.yaml")


def test_asking_for_an_unknown_account_suggests_the_closest(tmp_path: Path) -> None:
    """``--account helpdsk`` names the account meant."""
    config = load_config(write_config(tmp_path, "accounts:\n  - name: helpdesk\n  - name: billing\n"))
    assert config.account("billing").name == "billing"
    with pytest.raises(MailgateError, match=r"no account named 'helpdsk' \(did you mean 'helpdesk'\?\)"):
        config.account("helpdsk")


def test_a_pack_loaded_for_the_config_is_the_same_as_loaded_directly(tmp_path: Path) -> None:
    """The runtime and ``load_pack`` agree (both go through the cache)."""
    config = load_config(write_config(tmp_path, "accounts:\n  - {name: helpdesk, rule_pack: de-strict}\n"))
    runtime = Runtime(config, open_db=False)
    assert runtime.packs["helpdesk"] is load_pack("de-strict", tmp_path)


def test_database_timeouts_are_read_with_their_defaults() -> None:
    """``database_timeouts``: the defaults, and what the postgres fixture sets, as libpq parameters."""
    assert check_config(CONFIGS / "good" / "minimal.yaml").database_timeouts == DatabaseTimeouts(5, 30, 15)
    timeouts = check_config(CONFIGS / "good" / "postgres.yaml").database_timeouts
    assert timeouts == DatabaseTimeouts(connect_seconds=5, statement_seconds=20, keepalive_seconds=9)
    assert timeouts.answer_seconds == 25 and timeouts.server_options() == "-c statement_timeout=20000"
    assert timeouts.libpq_parameters() == {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 9,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 18000,
    }

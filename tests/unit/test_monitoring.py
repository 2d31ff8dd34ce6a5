"""The pieces of monitoring that need no running service: the ``service:`` config section, the
health rule, the bounded database calls, the metrics and their docs (the service itself is
scraped in tests/e2e/test_e2e_monitoring.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from sqlalchemy.engine import Engine

from engine.config.model import load_config
from engine.config.service import ListenAddress, parse_listen_address
from engine.errors import ConfigError
from engine.service.health import BoundedCalls, DatabaseSlow, account_problem, check_health
from engine.service.metrics import make_registry
from engine.service.stats import AccountStats, Monitored
from engine.storage.status import STATE_AUTH_FAILED, STATE_FAILED, STATE_RETRYING

ROOT = Path(__file__).resolve().parents[2]
MAILGATE = Path(sys.executable).parent / "mailgate"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def write_config(folder: Path, service: str) -> Path:
    """A config with one folder account and the given ``service:`` section text."""
    path = folder / "mailgate.yaml"
    path.write_text(
        f"database: sqlite:///mailgate.sqlite\n{service}accounts:\n  - {{name: desk, connector: folder}}\n",
        encoding="utf-8",
    )
    return path


# --- the service: section ------------------------------------------------------------------------


def test_the_service_section_gives_the_http_address_and_the_heartbeat(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "service:\n  http: 0.0.0.0:9464\n  heartbeat_seconds: 5\n"))
    assert (config.service.http, config.service.heartbeat_seconds) == (ListenAddress("0.0.0.0", 9464), 5.0)
    default = load_config(write_config(tmp_path, ""))
    assert (default.service.http, default.service.heartbeat_seconds) == (None, 15.0)


@pytest.mark.parametrize(
    ("written", "address"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("9464", ("127.0.0.1", 9464)), ("[::1]:80", ("::1", 80))],
)
def test_a_listen_address_is_host_and_port_or_a_port_on_loopback(
    written: str, address: tuple[str, int]
) -> None:
    assert parse_listen_address(written) == ListenAddress(*address)


def test_service_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    section = "service:\n  http: localhost\n  heartbeat_seconds: 0\n  htp: 1\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, section))
    messages = sorted(str(problem).split(":", 1)[1] for problem in caught.value.problems)
    assert messages == [
        "3:9: http must be HOST:PORT, e.g. 127.0.0.1:9464: the port must be a number from 1 to 65535, "
        "not 'localhost'",
        "4:22: heartbeat_seconds must be positive",
        "5:3: unknown key 'htp' in service (did you mean 'http'?)",
    ]
    with pytest.raises(ValueError, match=r"in brackets, as \[::1\]:9464"):
        parse_listen_address("::1:9464")


def test_run_refuses_a_malformed_http_address_without_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    done = subprocess.run(
        [str(MAILGATE), "--config", str(config), "run", "--http", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--http" in done.stderr and "from 1 to 65535" in done.stderr and "Traceback" not in done.stderr


# --- the health rule -----------------------------------------------------------------------------


def test_an_account_is_unhealthy_after_three_intervals_without_a_good_poll() -> None:
    stats = AccountStats("sales", poll_interval=60)
    start = 1_000_000.0
    assert account_problem(stats.snapshot(), start, start + 180) is None  # not polled yet, within 3 × 60 s
    late = account_problem(stats.snapshot(), start, start + 181)
    assert late is not None and late.startswith("account 'sales' has not polled successfully for 181 s")
    assert "last good poll never" in late
    stats.passed()  # now: a good pass
    assert account_problem(stats.snapshot(), start, stats.snapshot().last_success or 0) is None
    stats.failed(STATE_RETRYING, "connection refused", 5.0)  # one failure retried soon: still healthy
    now = (stats.snapshot().last_success or 0) + 10
    assert account_problem(stats.snapshot(), start, now) is None
    stats.failed(STATE_AUTH_FAILED, "login refused", 60.0)
    problem = account_problem(stats.snapshot(), start, now + 200)
    assert problem is not None and problem.endswith("; auth_failed: login refused")


def test_an_account_that_cannot_be_watched_is_unhealthy_at_once() -> None:
    stats = AccountStats("exchange", poll_interval=60)
    stats.failed(STATE_FAILED, "the exchange extra is not installed", None)
    report = check_health([stats.snapshot()], started_at=0.0, database_problem=None, now=1.0)
    assert not report.healthy
    assert report.body["reasons"] == [
        "account 'exchange' cannot be watched: the exchange extra is not installed"
    ]


def test_the_health_report_names_the_database_problem() -> None:
    report = check_health([], started_at=0.0, database_problem="connection refused", now=1.0)
    assert (report.healthy, report.body["database"], report.body["reasons"]) == (
        False,
        "connection refused",
        ["database: connection refused"],
    )
    assert check_health([], started_at=0.0, database_problem=None, now=1.0).body["status"] == "ok"


def test_a_database_call_that_hangs_is_given_up_and_calls_beyond_the_limit_fail_at_once() -> None:
    release = threading.Event()
    calls = BoundedCalls(timeout=0.05, max_pending=1)
    try:
        with pytest.raises(DatabaseSlow, match=r"did not answer within 0\.05 s"):
            calls.call(release.wait)
        with pytest.raises(DatabaseSlow, match="has not answered the last 1 checks"):
            calls.call(lambda: 1)  # the first is still waiting: no second thread
    finally:
        release.set()
    with pytest.raises(ZeroDivisionError):  # the work's own error reaches the caller, not the thread
        BoundedCalls(timeout=30).call(lambda: 1 / 0)
    assert BoundedCalls(timeout=30).call(lambda: 42) == 42


# --- the metrics ---------------------------------------------------------------------------------


def monitored(engine: Engine) -> Monitored:
    """Two accounts with some history, over a real (empty) database."""

    class Worker:
        starts, failures, stalls = 2, 0, 1

    good, bad = AccountStats("helpdesk", 30), AccountStats("sales", 60)
    for seconds in (0.0004, 0.003, 0.003, 0.7, 99.0):
        good.message_done("logged", seconds)
    good.message_done("quarantined", 0.02)
    good.passed()
    bad.failed(STATE_AUTH_FAILED, "login refused", 120.0)
    return Monitored((good, bad), ("helpdesk", "sales", "dormant"), Worker(), engine, 0.0)


def test_the_histogram_counts_each_message_in_its_bucket_and_the_rest(engine: Engine) -> None:
    text = generate_latest(make_registry(monitored(engine), BoundedCalls(timeout=30))).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    buckets = {
        sample.labels["le"]: sample.value
        for sample in families["mailgate_message_processing_seconds"].samples
        if sample.name.endswith("_bucket") and sample.labels["account"] == "helpdesk"
    }
    assert (buckets["0.001"], buckets["0.0025"], buckets["0.005"], buckets["0.025"]) == (1, 1, 3, 4)
    assert (buckets["0.5"], buckets["1.0"], buckets["30.0"], buckets["+Inf"]) == (4, 5, 5, 6)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("mailgate_messages_total", (("account", "helpdesk"), ("outcome", "logged")))] == 5
    assert samples[("mailgate_account_retry_delay_seconds", (("account", "sales"),))] == 120
    assert samples[("mailgate_account_state", (("account", "sales"), ("state", "auth_failed")))] == 1
    assert samples[("mailgate_quarantine_messages", (("account", "dormant"),))] == 0  # every account
    assert samples[("mailgate_parse_worker_starts_total", ())] == 2
    assert samples[("mailgate_parse_worker_stalls_total", ())] == 1


def test_the_metrics_table_of_the_docs_lists_exactly_the_metrics_served(engine: Engine) -> None:
    text = generate_latest(make_registry(monitored(engine), BoundedCalls(timeout=30))).decode()
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mailgate_")
    }
    doc = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(mailgate_[a-z_]+)` \|", doc, re.MULTILINE))
    assert documented == served


def test_the_prometheus_examples_parse_and_the_alerts_use_served_metrics() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    blocks = [YAML(typ="safe").load(body) for kind, body in _BLOCK.findall(doc) if kind == "yaml"]
    service, scrape, alerts = blocks
    assert service == {"service": {"http": "127.0.0.1:9464"}}
    assert scrape["scrape_configs"][0]["job_name"] == "mailgate"
    rules = alerts["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == ["MailgateAccountNotPolled", "MailgateQuarantineGrowing"]
    documented = set(re.findall(r"^\| `(mailgate_[a-z_]+)` \|", doc, re.MULTILINE))
    for rule in rules:
        assert set(re.findall(r"mailgate_[a-z_]+", rule["expr"])) <= documented

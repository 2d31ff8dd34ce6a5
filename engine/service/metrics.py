"""``/metrics``: the service's figures in the Prometheus text format (``prometheus_client``).

Everything is gathered when Prometheus scrapes, by one collector: the accounts' counters from
memory (``engine.service.stats``, kept by the watchers at a few additions per message), the
quarantine and the outbox from the database (``engine.storage.monitoring``: counted, not tracked
message by message). The database part waits at most ``DATABASE_TIMEOUT`` seconds; when it does
not answer, ``mailgate_database_up`` is 0 and its figures are left out, the rest is still served.

| metric | type | labels |
| --- | --- | --- |
| ``mailgate_messages_total`` | counter | account, outcome |
| ``mailgate_message_processing_seconds`` | histogram | account |
| ``mailgate_fetch_errors_total`` | counter | account |
| ``mailgate_acknowledge_errors_total`` | counter | account |
| ``mailgate_account_state`` | gauge (1 for the current state) | account, state |
| ``mailgate_account_consecutive_failures`` | gauge | account |
| ``mailgate_account_retry_delay_seconds`` | gauge | account |
| ``mailgate_last_successful_poll_timestamp_seconds`` | gauge | account |
| ``mailgate_account_lease_held`` | gauge (1: this process works the account) | account |
| ``mailgate_quarantine_messages`` | gauge | account |
| ``mailgate_outbox_messages`` | gauge | status |
| ``mailgate_outbox_oldest_waiting_age_seconds`` | gauge | |
| ``mailgate_parse_worker_starts_total``, ``_failures_total``, ``_stalls_total`` | counter | |
| ``mailgate_database_up`` | gauge | |
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from engine.service.health import BoundedCalls
from engine.service.stats import PROCESSING_BUCKETS, STATE_NEVER_POLLED, AccountSnapshot, Monitored
from engine.storage.monitoring import DatabaseFigures, read_figures
from engine.storage.status import STATE_AUTH_FAILED, STATE_FAILED, STATE_OK, STATE_RETRYING

log = logging.getLogger("mailgate.service")

ACCOUNT_STATES = (STATE_NEVER_POLLED, STATE_OK, STATE_RETRYING, STATE_AUTH_FAILED, STATE_FAILED)
OUTBOX_STATUSES = ("queued", "sending", "deferred", "sent", "failed")  # always shown, 0 when none


def _histogram(snapshots: list[AccountSnapshot]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "mailgate_message_processing_seconds",
        "Time to decide on and act on one message (its share of the batch's commit not included)",
        labels=["account"],
    )
    for snap in snapshots:
        cumulative, buckets = 0, []
        for bound, count in zip((*PROCESSING_BUCKETS, float("inf")), snap.bucket_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([snap.account], buckets, snap.processing_seconds)
    return family


def account_metrics(snapshots: list[AccountSnapshot]) -> Iterator[Metric]:
    """The per-account metrics, from the watchers' counters."""
    messages = CounterMetricFamily(
        "mailgate_messages", "Messages handled, by outcome (committed)", labels=["account", "outcome"]
    )
    fetch_errors = CounterMetricFamily(
        "mailgate_fetch_errors", "Failed attempts to connect, log in, list or fetch", labels=["account"]
    )
    ack_errors = CounterMetricFamily(
        "mailgate_acknowledge_errors",
        "Committed messages that could not be deleted or moved (the next pass does it)",
        labels=["account"],
    )
    state = GaugeMetricFamily(
        "mailgate_account_state", "1 for the account's current state", labels=["account", "state"]
    )
    failures = GaugeMetricFamily(
        "mailgate_account_consecutive_failures",
        "Failed attempts since the last good pass",
        labels=["account"],
    )
    delay = GaugeMetricFamily(
        "mailgate_account_retry_delay_seconds",
        "The wait before the next attempt after a failure (backoff); 0 when the account is ok",
        labels=["account"],
    )
    last_poll = GaugeMetricFamily(
        "mailgate_last_successful_poll_timestamp_seconds",
        "When a pass last handled everything waiting (Unix time; 0: never)",
        labels=["account"],
    )
    lease = GaugeMetricFamily(
        "mailgate_account_lease_held",
        "1 while this process holds the account's lease (works it); 0 while another process does",
        labels=["account"],
    )
    for snap in snapshots:
        lease.add_metric([snap.account], 1.0 if snap.lease_held else 0.0)
        for outcome, count in snap.outcomes:
            messages.add_metric([snap.account, outcome], count)
        fetch_errors.add_metric([snap.account], snap.fetch_errors)
        ack_errors.add_metric([snap.account], snap.acknowledge_errors)
        for name in ACCOUNT_STATES:
            state.add_metric([snap.account, name], 1.0 if snap.state == name else 0.0)
        failures.add_metric([snap.account], snap.consecutive_failures)
        delay.add_metric([snap.account], snap.retry_delay)
        last_poll.add_metric([snap.account], snap.last_success or 0.0)
    yield from (
        messages,
        _histogram(snapshots),
        fetch_errors,
        ack_errors,
        state,
        failures,
        delay,
        last_poll,
        lease,
    )


def database_metrics(figures: DatabaseFigures, account_names: tuple[str, ...]) -> Iterator[Metric]:
    """The quarantine and the outbox, as counted in the database."""
    quarantine = GaugeMetricFamily(
        "mailgate_quarantine_messages", "Messages held in quarantine", labels=["account"]
    )
    for account in sorted(set(account_names) | set(figures.quarantined)):
        quarantine.add_metric([account], figures.quarantined.get(account, 0))
    outbox = GaugeMetricFamily("mailgate_outbox_messages", "Outgoing messages, by status", labels=["status"])
    for status in sorted(set(OUTBOX_STATUSES) | set(figures.outbox)):
        outbox.add_metric([status], figures.outbox.get(status, 0))
    oldest = GaugeMetricFamily(
        "mailgate_outbox_oldest_waiting_age_seconds",
        "Age of the oldest outgoing message still to be sent (queued, deferred or sending); 0: none",
    )
    age = 0.0
    if figures.oldest_waiting is not None:
        queued = figures.oldest_waiting
        queued = queued.replace(tzinfo=UTC) if queued.tzinfo is None else queued
        age = max((datetime.now(UTC) - queued).total_seconds(), 0.0)
    oldest.add_metric([], age)
    yield from (quarantine, outbox, oldest)


class ServiceCollector(Collector):
    """Every ``mailgate_*`` metric, gathered at scrape time (see the module)."""

    def __init__(self, monitored: Monitored, database: BoundedCalls) -> None:
        self.monitored = monitored
        self.database = database

    def collect(self) -> Iterator[Metric]:
        """The metrics now; the database's only if it answers in time."""
        monitored = self.monitored
        yield from account_metrics([stats.snapshot() for stats in monitored.accounts])
        worker = monitored.parse_worker
        yield CounterMetricFamily(
            "mailgate_parse_worker_starts", "Parse worker processes started (one per backlog)", worker.starts
        )
        yield CounterMetricFamily(
            "mailgate_parse_worker_failures",
            "Parse workers that failed (then messages are parsed in the service's process)",
            worker.failures,
        )
        yield CounterMetricFamily(
            "mailgate_parse_worker_stalls",
            "Parse workers killed because a message held them past the time limit (then restarted)",
            worker.stalls,
        )
        try:
            figures = self.database.call(lambda: read_figures(monitored.engine))
        except Exception as exc:
            log.debug("metrics without the database's figures: %s", exc)
            figures = None
        yield GaugeMetricFamily(
            "mailgate_database_up", "1 if the database answered this scrape", 0.0 if figures is None else 1.0
        )
        if figures is not None:
            yield from database_metrics(figures, monitored.account_names)


def make_registry(monitored: Monitored, database: BoundedCalls) -> CollectorRegistry:
    """A registry of the service's metrics, with the process's (memory, CPU, start time) and Python's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(monitored, database))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry

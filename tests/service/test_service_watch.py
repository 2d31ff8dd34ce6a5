"""The running service (``Service.run``) in process: retries with backoff, slow mailboxes, push, stop."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from service_desk import account_yaml, build_service_desk, make_mail, run_async, wait_until

from connectors.base import AuthenticationError, Connector, ConnectorError, MessageRef
from connectors.memory import MemoryConnector, MemoryMailbox
from engine.config.model import AccountConfig
from engine.service import Backoff, Service, ServiceOptions
from engine.service.runner import default_connector, find_outbox_drainer

FAST = ServiceOptions(
    retry=Backoff(initial=0.05, cap=0.2),
    auth_retry=Backoff(initial=0.1, cap=0.4),
    operation_timeout=0.5,
    outbox_interval=0.05,
)


class FlakyConnector(MemoryConnector):
    """Mailbox ``flaky`` refuses its first connections; ``locked`` refuses the password, always."""

    refusals_left = 3

    async def connect(self) -> None:
        """Refuse while the test says so."""
        if self.account == "locked":
            raise AuthenticationError("LOGIN failed: wrong password for locked@example.com")
        if self.account == "flaky" and FlakyConnector.refusals_left > 0:
            FlakyConnector.refusals_left -= 1
            raise ConnectorError("connection refused by 127.0.0.1:1")
        await super().connect()


class HangingConnector(MemoryConnector):
    """A server that accepts the connection and then never answers a listing."""

    async def list_waiting(self) -> list[MessageRef]:
        """Never returns (until cancelled)."""
        await asyncio.Event().wait()
        return []


def _factory(account: AccountConfig, base_dir: Path) -> Connector:
    settings = default_connector(account, base_dir).settings
    cls = {"flaky": FlakyConnector, "locked": FlakyConnector, "slow": HangingConnector}.get(
        account.name, MemoryConnector
    )
    return cls(account.name, settings, base_dir)


async def _serve_until(service: Service, done: str, condition: Callable[[], bool]) -> None:
    task = asyncio.create_task(service.run())
    try:
        await wait_until(condition, done)
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)


def test_an_unreachable_account_is_retried_with_growing_delays_while_the_others_carry_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    FlakyConnector.refusals_left = 3
    desk = build_service_desk(
        tmp_path,
        account_yaml("flaky", "{type: memory, mailbox: flaky}", poll=0.05)
        + account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=0.05),
    )
    MemoryMailbox.named("flaky").append(make_mail(1))
    MemoryMailbox.named("hd").append(make_mail(2))
    service = Service(desk.runtime, FAST, connector_factory=_factory)

    def both_processed() -> bool:
        return not MemoryMailbox.named("flaky").messages and not MemoryMailbox.named("hd").messages

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        run_async(_serve_until(service, "both mailboxes to be processed", both_processed))

    failures = [r.message for r in caplog.records if "event=poll_failed account=flaky" in r.message]
    assert len(failures) == 3
    assert all('error="connection refused by 127.0.0.1:1"' in line for line in failures)
    delays = [float(re.search(r"retry_in=([0-9.]+)", line).group(1)) for line in failures]  # type: ignore[union-attr]
    for delay, nominal in zip(delays, (0.05, 0.1, 0.2), strict=True):  # doubling, jitter in the upper half
        assert nominal / 2 - 0.001 <= delay <= nominal + 0.001
    assert any("event=recovered account=flaky after_failures=3" in r.message for r in caplog.records)
    assert [e.message_id for e in desk.ledger()] and desk.call_count() == 2
    status = desk.status("flaky")
    assert status is not None and status.state == "ok" and status.messages_processed == 1
    assert status.last_error == "connection refused by 127.0.0.1:1"


def test_a_refused_password_is_reported_loudly_and_retried_slowly_while_the_others_carry_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("locked", "{type: memory, mailbox: locked}", poll=0.05)
        + account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=0.05),
    )
    MemoryMailbox.named("locked").append(make_mail(1))
    service = Service(desk.runtime, FAST, connector_factory=_factory)

    def locked_retried_and_mail_processed() -> bool:
        refused = [r for r in caplog.records if "event=authentication_failed account=locked" in r.message]
        return len(refused) >= 2 and not MemoryMailbox.named("hd").messages

    async def scenario() -> None:
        task = asyncio.create_task(service.run())
        await wait_until(lambda: desk.status("helpdesk") is not None, "a first pass")
        MemoryMailbox.named("hd").append(make_mail(2))  # arrives while the other account keeps failing
        await wait_until(locked_retried_and_mail_processed, "a retry of 'locked' and the mail of 'helpdesk'")
        service.request_stop()
        await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        run_async(scenario())

    refused = [r for r in caplog.records if "event=authentication_failed account=locked" in r.message]
    assert all(r.levelno == logging.ERROR for r in refused)
    first_delay = float(re.search(r"retry_in=([0-9.]+)", refused[0].message).group(1))  # type: ignore[union-attr]
    assert first_delay >= FAST.auth_retry.initial / 2  # the slower policy, not the connection one
    status = desk.status("locked")
    assert status is not None and status.state == "auth_failed" and status.retry_at is not None
    assert status.last_error == "LOGIN failed: wrong password for locked@example.com"
    assert list(MemoryMailbox.named("locked").messages) == ["00000001"]
    assert [e.message_id for e in desk.ledger("helpdesk")] == ["m2@example.com"]


def test_a_server_that_never_answers_times_out_without_delaying_the_other_accounts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk = build_service_desk(
        tmp_path,
        account_yaml("slow", "{type: memory, mailbox: slow}", poll=0.05)
        + account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=0.05),
    )
    MemoryMailbox.named("hd").extend(make_mail(n) for n in (1, 2, 3))
    service = Service(desk.runtime, FAST, connector_factory=_factory)

    def timed_out_and_processed() -> bool:
        timed_out = any("event=poll_failed account=slow" in r.message for r in caplog.records)
        return timed_out and not MemoryMailbox.named("hd").messages

    with caplog.at_level(logging.INFO, logger="mailgate.service"):
        run_async(_serve_until(service, "a timeout and the other mailbox processed", timed_out_and_processed))

    assert any(
        'event=poll_failed account=slow error="no answer in time"' in r.message for r in caplog.records
    )
    assert len(desk.ledger("helpdesk")) == 3
    status = desk.status("slow")
    assert status is not None and status.last_error == "no answer in time"


class PushMailbox(MemoryConnector):
    """A memory mailbox with push: ``wait_for_new`` returns as soon as the test rings ``bell``."""

    supports_push = True
    bell: asyncio.Event | None = None
    waits = 0

    async def wait_for_new(self, timeout: float) -> bool:
        """Wait for the bell (the IMAP IDLE of this mailbox)."""
        assert PushMailbox.bell is not None
        PushMailbox.waits += 1
        try:
            await asyncio.wait_for(PushMailbox.bell.wait(), timeout)
        except TimeoutError:
            return False
        PushMailbox.bell.clear()
        return True


def test_push_processes_a_new_mail_without_waiting_for_the_poll_interval(tmp_path: Path) -> None:
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=3600))
    box = MemoryMailbox.named("hd")

    def push_factory(account: AccountConfig, base_dir: Path) -> Connector:
        return PushMailbox(account.name, default_connector(account, base_dir).settings, base_dir)

    async def scenario() -> None:
        PushMailbox.bell, PushMailbox.waits = asyncio.Event(), 0
        service = Service(desk.runtime, FAST, connector_factory=push_factory)
        task = asyncio.create_task(service.run())
        await wait_until(lambda: PushMailbox.waits == 1, "the service to wait for new mail")
        box.append(make_mail(1))
        PushMailbox.bell.set()  # the server tells us; the hour-long poll interval has not passed
        await wait_until(lambda: not box.messages, "the pushed mail to be processed")
        service.request_stop()
        await asyncio.wait_for(task, 30)

    run_async(scenario())

    assert [e.message_id for e in desk.ledger()] == ["m1@example.com"]


def test_a_stop_request_ends_a_waiting_service_at_once(tmp_path: Path) -> None:
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=3600))

    async def scenario() -> None:
        service = Service(desk.runtime, FAST)
        task = asyncio.create_task(service.run())
        await wait_until(lambda: desk.status("helpdesk") is not None, "a first pass")
        service.request_stop()
        await asyncio.wait_for(task, 30)  # not an hour: the wait gives way to the stop

    run_async(scenario())


def test_the_outbox_hook_is_called_after_mail_was_processed(tmp_path: Path) -> None:
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: memory, mailbox: hd}", poll=3600))
    MemoryMailbox.named("hd").append(make_mail(1))
    drained: list[int] = []

    async def drain_outbox(runtime: object) -> None:
        drained.append(len(desk.ledger()))

    async def scenario() -> None:
        service = Service(desk.runtime, FAST, outbox_drainer=drain_outbox)
        task = asyncio.create_task(service.run())
        await wait_until(lambda: any(count == 1 for count in drained), "a drain after the commit")
        service.request_stop()
        await asyncio.wait_for(task, 30)

    run_async(scenario())


def test_the_service_finds_the_outgoing_mail_sender() -> None:
    drain = find_outbox_drainer()

    assert drain is not None and drain.__module__ == "engine.outgoing.delivery"
    assert asyncio.iscoroutinefunction(drain)


class AcknowledgeHangs(MemoryConnector):
    """A server that takes the message and then never answers the deletion."""

    acknowledging = False

    async def acknowledge(self, ref: MessageRef) -> None:
        """Hang (until cancelled)."""
        AcknowledgeHangs.acknowledging = True
        await asyncio.Event().wait()


def test_a_second_stop_request_stops_at_once_and_the_committed_message_is_a_duplicate_next_time(
    tmp_path: Path,
) -> None:
    desk = build_service_desk(tmp_path, account_yaml("helpdesk", "{type: memory, mailbox: hd}"))
    box = MemoryMailbox.named("hd")
    box.append(make_mail(1))

    def hanging_factory(account: AccountConfig, base_dir: Path) -> Connector:
        return AcknowledgeHangs(account.name, default_connector(account, base_dir).settings, base_dir)

    async def scenario() -> None:
        AcknowledgeHangs.acknowledging = False
        service = Service(
            desk.runtime, ServiceOptions(acknowledge_timeout=3600), connector_factory=hanging_factory
        )
        task = asyncio.create_task(service.run())
        await wait_until(lambda: AcknowledgeHangs.acknowledging, "the acknowledgement to start")
        service.request_stop()  # the first request waits for the message in hand...
        await asyncio.sleep(0.1)
        assert not task.done()
        service.request_stop()  # ...the second does not
        await asyncio.wait_for(task, 30)

    run_async(scenario())
    assert list(box.messages) == ["00000001"] and [e.outcome for e in desk.ledger()] == ["logged"]

    [report] = run_async(Service(desk.runtime).run_once())

    assert dict(report.outcomes) == {"duplicate": 1} and box.messages == {}
    assert desk.call_count() == 1

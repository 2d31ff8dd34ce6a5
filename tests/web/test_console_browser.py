"""The console in a real browser: Debian's headless Chromium driven by Playwright (no downloaded browser).

Each test signs in through the form, clicks as an admin would, and reads what the page shows.
Screenshots go to ``$MAILGATE_SCREENSHOTS`` when set (docs/console.md's come from
``MAILGATE_SCREENSHOTS=docs/images/console pytest tests/web/test_console_browser.py``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_desk import PASSWORD, SCRIPT_SUBJECT, ConsoleDesk, build_console_desk
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from engine.config.service import ListenAddress
from engine.storage.db import transaction
from engine.storage.models import OutboxMessage, QuarantineEntry
from engine.web.server import ConsoleServer

CHROMIUM = os.environ.get("MAILGATE_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[ConsoleDesk]:
    """The installation of tests/web/console_desk.py, on SQLite only (the HTTP tests cover both)."""
    built = build_console_desk(tmp_path)
    yield built
    built.runtime.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver for this module."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; skipped locally without it, failed under CI=true."""
    if shutil.which(CHROMIUM) is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield launched
    launched.close()


@pytest.fixture
def console_url(desk: ConsoleDesk) -> Iterator[str]:
    """The desk's console, served by uvicorn on a free loopback port."""
    server = ConsoleServer(desk.runtime, ListenAddress("127.0.0.1", 0))
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (its own cookies), laptop-sized."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Keep what the page looks like, for docs/console.md (only when asked to)."""
    folder = os.environ.get("MAILGATE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def sign_in(page: Page, url: str, name: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{url}/messages")
    expect(page).to_have_url(re.compile(r"/login\?next=/messages$"))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()


def test_sign_in_find_a_message_by_subject_and_open_its_trace(page: Page, console_url: str) -> None:
    sign_in(page, console_url, "vic")
    page.get_by_role("link", name="Accounts").click()
    expect(page.locator("tbody")).to_contain_text("1 updated")
    screenshot(page, "accounts")
    page.get_by_role("link", name="Messages").click()
    page.get_by_label("Subject").fill("toner")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    screenshot(page, "messages")
    page.get_by_role("link", name="RE: [CALL#100] toner everywhere").click()
    expect(page.locator("pre.trace")).to_contain_text("MATCH update_call")
    expect(page.locator("pre.trace")).to_contain_text("outcome: updated (rule update_call)")
    screenshot(page, "message")


def test_retry_a_quarantined_mail_after_fixing_the_pack_on_disk(
    page: Page, console_url: str, desk: ConsoleDesk
) -> None:
    sign_in(page, console_url, "root")
    page.get_by_role("link", name="Quarantine").click()
    screenshot(page, "quarantine")
    row = page.locator("tr", has_text="Scanner jammed")
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("Still quarantined: no rule of pack 'local'")
    desk.fix_pack()
    page.go_back()
    page.locator("tr", has_text="Scanner jammed").get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("Released: logged (rule log_new_call)")
    screenshot(page, "retried")
    page.get_by_role("link", name="Back to the quarantine").click()
    expect(page.locator("tbody")).not_to_contain_text("Scanner jammed")


def test_drop_a_quarantined_mail(page: Page, console_url: str, desk: ConsoleDesk) -> None:
    sign_in(page, console_url, "root")
    page.get_by_role("link", name="Quarantine").click()
    page.once("dialog", lambda dialog: dialog.accept())  # "Drop quarantine entry N for good?"
    page.locator("tr", has_text="Coffee machine").get_by_role("button", name="Drop").click()
    expect(page.locator("tbody")).not_to_contain_text("Coffee machine")
    with transaction(desk.runtime.engine) as session:
        assert session.get(QuarantineEntry, desk.results["other"].quarantine_id) is None


def test_outbox_retry_queues_a_failed_message_again(page: Page, console_url: str, desk: ConsoleDesk) -> None:
    failed = desk.fail_outgoing()
    sign_in(page, console_url, "root")
    page.get_by_role("link", name="Outbox").click()
    page.get_by_role("link", name="failed (1)").click()
    row = page.locator(f"#out-{failed}")
    expect(row).to_contain_text("550 mailbox unavailable")
    screenshot(page, "outbox")
    row.get_by_role("button", name="Retry now").click()
    expect(page.locator(f"#out-{failed} td.status")).to_have_text("queued")
    with transaction(desk.runtime.engine) as session:
        stored = session.get(OutboxMessage, failed)
        assert stored is not None and stored.status == "queued"


def test_try_a_pack_change_on_a_logged_mail(page: Page, console_url: str, desk: ConsoleDesk) -> None:
    sign_in(page, console_url, "vic")
    page.get_by_role("link", name="Rule packs").click()
    expect(page.locator("pre.ok")).to_contain_text("ok: rule pack")
    screenshot(page, "packs", full_page=False)
    page.get_by_role("link", name="Try a pack on a real mail").click()
    page.get_by_label("a message from the log").check()
    page.get_by_label("Number").fill(str(1))
    strict = str((desk.root / "rules" / "strict.yaml").resolve())
    page.get_by_label("Pack file").select_option(strict)
    page.get_by_role("button", name="Decide").click()
    expect(page.locator("#would-verdict")).to_have_text("refused (rule no_updates_by_mail)")
    expect(page.locator("section", has_text="What happened")).to_contain_text("updated (rule update_call)")
    screenshot(page, "try")


def test_a_viewer_cannot_retry(page: Page, console_url: str, desk: ConsoleDesk) -> None:
    sign_in(page, console_url, "vic")
    page.get_by_role("link", name="Quarantine").click()
    retry = page.locator("tr", has_text="Scanner jammed").get_by_role("button", name="Retry")
    expect(retry).to_be_disabled()
    retry.evaluate("button => { button.disabled = false; }")  # as a viewer who edits the page would
    retry.click()
    expect(page.get_by_role("alert")).to_have_text("only admins may do this; you are a viewer")
    with transaction(desk.runtime.engine) as session:
        held = session.get(QuarantineEntry, desk.results["new"].quarantine_id)
        assert held is not None and held.status == "held"


def test_a_forged_post_without_the_csrf_token_is_refused(
    page: Page, console_url: str, desk: ConsoleDesk
) -> None:
    sign_in(page, console_url, "root")
    page.get_by_role("link", name="Quarantine").click()
    drop = page.locator("tr", has_text="Coffee machine").locator("form", has_text="Drop")
    drop.evaluate(
        "form => { form.removeAttribute('data-confirm'); form.querySelector('[name=csrf]').remove(); }"
    )
    drop.get_by_role("button", name="Drop").click()
    expect(page.get_by_role("alert")).to_have_text("CSRF token missing or wrong")
    with transaction(desk.runtime.engine) as session:
        assert session.get(QuarantineEntry, desk.results["other"].quarantine_id) is not None


def test_an_html_mail_with_script_does_not_run_in_the_console(
    page: Page, console_url: str, desk: ConsoleDesk
) -> None:
    sign_in(page, console_url, "root")
    held = desk.results["script"].quarantine_id
    for path in ("/messages", "/quarantine", f"/quarantine/{held}", "/messages/4"):
        page.goto(f"{console_url}{path}")
        assert page.evaluate("() => window.pwned === undefined"), path
        assert page.title() != "pwned", path
    page.goto(f"{console_url}/quarantine/{held}")
    expect(page.locator("main")).to_contain_text("window.pwned = true;")  # shown as text, not run
    page.goto(f"{console_url}/messages")
    expect(page.get_by_role("link", name=SCRIPT_SUBJECT)).to_be_visible()
    assert page.locator("main b").count() == 0  # the subject's <b> is text, not markup


def test_the_console_fits_a_phone_and_works_from_the_keyboard(browser: Browser, console_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        sign_in(phone, console_url, "vic")
        for path in ("/accounts", "/messages", "/quarantine", "/outbox", "/packs", "/messages/1"):
            phone.goto(f"{console_url}{path}")
            wide = phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{path} is {wide} px wider than the phone"
        screenshot(phone, "phone", full_page=False)
        phone.goto(f"{console_url}/messages")
        phone.keyboard.press("Tab")
        assert phone.evaluate("() => document.activeElement.textContent") == "Skip to content"
        phone.keyboard.press("Enter")
        phone.keyboard.press("Tab")
        assert phone.evaluate("() => document.activeElement.name") == "sender"  # the search form, first
    finally:
        context.close()

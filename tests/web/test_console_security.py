"""The console's security over HTTP: sign-in, cookies, CSRF, roles, the proxy header, CSP, escaping."""

from __future__ import annotations

import re

from console_client import TestClient, sign_in
from console_desk import PASSWORD, SCRIPT_SUBJECT, ConsoleDesk
from sqlmodel import select

from engine.storage.console import ConsoleAdmin, ConsoleAudit
from engine.storage.db import transaction
from engine.storage.models import QuarantineEntry
from engine.web.app import create_app


def test_a_stranger_is_sent_to_sign_in_and_a_wrong_password_is_refused(client: TestClient) -> None:
    answer = client.get("/messages", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/messages"
    refused = client.post("/login", data={"name": "root", "password": "wrong password"})
    assert refused.status_code == 401 and "Wrong name or password" in refused.text
    unknown = client.post("/login", data={"name": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401
    assert client.get("/messages", follow_redirects=False).status_code == 303


def test_sign_ins_and_refused_ones_are_audited(client: TestClient, desk: ConsoleDesk) -> None:
    client.post("/login", data={"name": "root", "password": "wrong password"})
    sign_in(client, "root")
    with transaction(desk.runtime.engine) as session:
        actions = [(row.admin, row.action) for row in session.exec(select(ConsoleAudit))]
    assert ("root", "sign_in.refused") in actions and ("root", "sign_in") in actions


def test_the_session_cookie_is_secure_httponly_and_samesite_strict(client: TestClient) -> None:
    answer = client.post("/login", data={"name": "root", "password": PASSWORD}, follow_redirects=False)
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith("mailgate_session=")
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_a_password_is_stored_only_as_an_argon2_hash(desk: ConsoleDesk) -> None:
    with transaction(desk.runtime.engine) as session:
        stored = session.get(ConsoleAdmin, "root")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


def test_every_answer_carries_the_content_security_policy(client: TestClient) -> None:
    for answer in (client.get("/login"), client.get("/static/console.js")):
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, desk: ConsoleDesk
) -> None:
    sign_in(client, "root")
    held = desk.results["other"].quarantine_id
    for form in ({}, {"csrf": "forged"}):
        answer = client.post(f"/quarantine/{held}/drop", data=form)
        assert answer.status_code == 403 and "CSRF token missing or wrong" in answer.text
    with transaction(desk.runtime.engine) as session:
        assert session.get(QuarantineEntry, held) is not None


def test_a_viewer_cannot_retry_drop_or_cancel(client: TestClient, desk: ConsoleDesk) -> None:
    csrf = sign_in(client, "vic")
    held = desk.results["new"].quarantine_id
    outgoing = desk.fail_outgoing()
    for url in (f"/quarantine/{held}/retry", f"/quarantine/{held}/drop", f"/outbox/{outgoing}/retry"):
        answer = client.post(url, data={"csrf": csrf})
        assert answer.status_code == 403 and "only admins" in answer.text, url
    page = client.get("/quarantine").text
    assert re.search(r'<button type="submit" disabled title="admins only">Retry</button>', page)
    with transaction(desk.runtime.engine) as session:
        entry = session.get(QuarantineEntry, held)
        assert entry is not None and entry.status == "held"


def test_signing_out_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client, "root")
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/accounts", follow_redirects=False).status_code == 303


def test_a_trusted_proxy_header_signs_in_a_known_admin_only(desk: ConsoleDesk) -> None:
    app = create_app(desk.runtime, user_header="X-Remote-User")
    with TestClient(app, base_url="https://testserver") as proxied:
        assert proxied.get("/accounts", headers={"X-Remote-User": "nobody"}).status_code == 403
        assert proxied.get("/accounts").status_code == 403
        page = proxied.get("/quarantine", headers={"X-Remote-User": "root"})
        assert page.status_code == 200 and "root (admin)" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        held = desk.results["other"].quarantine_id
        dropped = proxied.post(
            f"/quarantine/{held}/drop", data={"csrf": csrf.group(1)}, headers={"X-Remote-User": "root"}
        )
        assert dropped.status_code == 200
        # a password sign-in's cookie does not stand in for the header
        assert proxied.get("/accounts").status_code == 403


def test_every_admin_action_is_recorded_in_the_audit(client: TestClient, desk: ConsoleDesk) -> None:
    csrf = sign_in(client, "root")
    client.post(f"/quarantine/{desk.results['other'].quarantine_id}/drop", data={"csrf": csrf})
    client.post(f"/outbox/{desk.fail_outgoing()}/retry", data={"csrf": csrf})
    with transaction(desk.runtime.engine) as session:
        actions = [(row.admin, row.action) for row in session.exec(select(ConsoleAudit))]
    assert ("root", "quarantine.drop") in actions and ("root", "outbox.retry") in actions
    assert "quarantine.drop" in client.get("/audit").text


def test_mail_content_is_escaped_on_every_page(client: TestClient, desk: ConsoleDesk) -> None:
    sign_in(client, "root")
    entry = desk.results["script"]
    pages = ["/messages", "/quarantine", f"/quarantine/{entry.quarantine_id}"]
    for url in pages:
        text = client.get(url).text
        assert "<script>document.title" not in text and "<b>on fire</b>" not in text, url
        assert "&lt;script&gt;" in text, url
    detail = client.get(f"/quarantine/{entry.quarantine_id}").text
    assert "&lt;script&gt;window.pwned = true;" in detail  # the HTML part, as its source
    assert SCRIPT_SUBJECT not in detail


def test_the_raw_mail_downloads_as_a_file_never_rendered(client: TestClient, desk: ConsoleDesk) -> None:
    sign_in(client, "root")
    entry = desk.results["script"]
    answer = client.get(f"/quarantine/{entry.quarantine_id}/raw")
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment;")
    with transaction(desk.runtime.engine) as session:
        held = session.get(QuarantineEntry, entry.quarantine_id)
        assert held is not None and answer.content == held.raw


def test_a_sign_in_posted_from_another_site_is_refused(client: TestClient) -> None:
    login = {"name": "root", "password": PASSWORD}
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ):
        refused = client.post("/login", data=login, headers=headers, follow_redirects=False)
        assert refused.status_code == 403 and "another site" in refused.text
        assert "set-cookie" not in refused.headers
    same = client.post(
        "/login", data=login, headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False
    )
    assert same.status_code == 303


def test_an_action_posted_from_another_site_is_refused_even_with_the_csrf_token(
    client: TestClient, desk: ConsoleDesk
) -> None:
    csrf = sign_in(client, "root")
    held = desk.results["other"].quarantine_id
    refused = client.post(
        f"/quarantine/{held}/drop", data={"csrf": csrf}, headers={"Origin": "http://evil.example"}
    )
    assert refused.status_code == 403
    with transaction(desk.runtime.engine) as session:
        assert session.get(QuarantineEntry, held) is not None

"""STARTTLS and implicit TLS with certificate verification, and AUTH LOGIN, PLAIN and XOAUTH2."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from outgoing_desk import T0, MakeDesk, StartServer
from servers.tls import TestCertificates, make_test_certificates
from smtp_test_server import SmtpServer


def tls_server(server: SmtpServer, security: str, ca: Path | None, **extra: Any) -> dict[str, Any]:
    """Settings for a test server reached by its name, so that the certificate's name is checked."""
    settings = {"host": "localhost", "port": server.port, "security": security, "timeout": 10, **extra}
    if ca is not None:
        settings["ca_file"] = str(ca)
    return settings


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_a_trusted_ca_delivers(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates, security: str
) -> None:
    server = smtp(tls="starttls" if security == "starttls" else "implicit")
    desk = make_desk(tls_server(server, security, certs.ca_cert))
    desk.deliver("Monitor flickers")

    report = desk.drain(T0)

    assert [d.status for d in report.deliveries] == ["sent"]
    assert len(server.handler.arrived) == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_from_an_unknown_ca_is_refused_and_the_message_waits(
    smtp: StartServer, make_desk: MakeDesk, security: str
) -> None:
    server = smtp(tls="starttls" if security == "starttls" else "implicit")
    desk = make_desk(tls_server(server, security, None))
    desk.deliver("Monitor flickers")

    report = desk.drain(T0)

    assert [d.status for d in report.deliveries] == ["deferred"]
    [row] = desk.rows()
    assert "certificate" in (row.last_error or "").lower()
    assert server.handler.arrived == []


def test_a_ca_file_does_not_make_another_cas_certificate_trusted(
    smtp: StartServer, make_desk: MakeDesk, tmp_path: Path
) -> None:
    other = make_test_certificates(tmp_path / "other-ca")
    server = smtp(tls="starttls")  # signed by the session's CA, not by `other`
    desk = make_desk(tls_server(server, "starttls", other.ca_cert))
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    assert [r.status for r in desk.rows()] == ["deferred"]


def test_starttls_required_but_not_offered_is_not_sent_in_clear(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()  # plain only
    desk = make_desk({"host": server.host, "port": server.port, "security": "starttls", "timeout": 10})
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    [row] = desk.rows()
    assert row.status == "deferred" and "starttls" in (row.last_error or "").lower()
    assert server.handler.arrived == []


@pytest.mark.parametrize("auth", ["login", "plain", None])
def test_password_login_over_starttls(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates, auth: str | None
) -> None:
    server = smtp(tls="starttls", users={"desk": "s3cret"})
    settings = tls_server(server, "starttls", certs.ca_cert, username="desk", password="s3cret")
    if auth is not None:
        settings["auth"] = auth
    desk = make_desk(settings)
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    [arrival] = server.handler.arrived
    assert arrival.login == "desk"
    mechanism, login = server.handler.logins[0]
    assert login == "desk"
    if auth is not None:
        assert mechanism == auth.upper()


def test_a_refused_login_defers_the_message_it_never_fails_it(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates
) -> None:
    server = smtp(tls="starttls", users={"desk": "s3cret"})
    desk = make_desk(
        tls_server(server, "starttls", certs.ca_cert, username="desk", password="wrong", auth="plain"),
        permanent_codes=[501, 503, 535, 550, 553],
    )
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    [row] = desk.rows()
    assert row.status == "deferred"
    assert "refused the login of desk" in (row.last_error or "")


def test_xoauth2_with_a_token_from_the_config(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates
) -> None:
    server = smtp(tls="starttls", token="tok-123")
    desk = make_desk(
        tls_server(server, "starttls", certs.ca_cert, username="desk@desk.example", oauth_token="tok-123")
    )
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    assert server.handler.logins == [("XOAUTH2", "desk@desk.example")]
    assert len(server.handler.arrived) == 1


def test_xoauth2_with_a_token_printed_by_a_command(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates
) -> None:
    server = smtp(tls="starttls", token="fresh-token")
    command = f"{shlex.quote(sys.executable)} -c \"print('fresh-token')\""
    desk = make_desk(
        tls_server(
            server, "starttls", certs.ca_cert, username="desk@desk.example", oauth_token_command=command
        )
    )
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    assert server.handler.logins == [("XOAUTH2", "desk@desk.example")]


def test_a_rejected_token_defers_the_message(
    smtp: StartServer, make_desk: MakeDesk, certs: TestCertificates
) -> None:
    server = smtp(tls="starttls", token="the-right-one")
    desk = make_desk(tls_server(server, "starttls", certs.ca_cert, username="desk", oauth_token="expired"))
    desk.deliver("Monitor flickers")

    desk.drain(T0)

    [row] = desk.rows()
    assert row.status == "deferred" and "token rejected" in (row.last_error or "")

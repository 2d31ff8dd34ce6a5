"""Templates with an HTML part, and the commands admins use: ``preview``, ``outbox send``, ``outbox``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from outgoing_desk import MakeDesk, StartServer, plain_server

from engine.errors import ConfigError
from engine.rules.pack import load_pack
from engine.rules.templates import text_to_html

MAILGATE = Path(sys.executable).parent / "mailgate"

PACK_WITH_HTML = """\
name: branded
extends: default
templates:
  call_logged:
    subject: "Ticket {{ number }}"
    body: |
      Ticket {{ number }}: {{ summary }}
    html: |
      <h1 style="color: #036">Ticket {{ number }}</h1>
      <p>{{ summary }}</p>
"""


def mailgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real console script."""
    return subprocess.run([str(MAILGATE), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_an_html_template_is_sent_as_the_html_part_with_values_escaped(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(
        plain_server(server), account={"rule_pack": "branded"}, files={"rules/branded.yaml": PACK_WITH_HTML}
    )

    result = desk.deliver("Screen shows <nothing> & beeps")
    desk.drain()

    [arrival] = server.handler.arrived
    assert arrival.part("plain") == f"Ticket {result.number}: Screen shows <nothing> & beeps\n"
    html = arrival.part("html")
    assert f'<h1 style="color: #036">Ticket {result.number}</h1>' in html
    assert "<p>Screen shows &lt;nothing&gt; &amp; beeps</p>" in html
    assert html.startswith("<!DOCTYPE html>")


def test_html_made_from_text_keeps_paragraphs_and_line_breaks_and_escapes() -> None:
    html = text_to_html("Hello <Ada>,\n\nline one\nline two & more\n")

    assert "<p>Hello &lt;Ada&gt;,</p>\n<p>line one<br>\nline two &amp; more</p>" in html


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            {"subject": "s", "body": "b", "html": "<p>{{ nummer }}</p>"},
            "7:11 template 'call_logged' html: 'nummer' is undefined",
        ),
        ({"subject": "s", "body": "b", "htlm": "<p></p>"}, "7:5 template 'call_logged': unknown key 'htlm'"),
        ({"subject": "s", "body": "b", "html": "<p>{% if %}</p>"}, "7:11 template 'call_logged' html: "),
    ],
)
def test_a_broken_html_template_is_refused_where_it_is_written(
    tmp_path: Path, template: dict[str, str], expected: str
) -> None:
    pack = tmp_path / "p.yaml"
    pack.write_text(
        "name: p\nextends: default\ntemplates:\n  call_logged:\n"
        + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in template.items()),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        load_pack(str(pack), tmp_path)

    found = [f"{p.line}:{p.col} {p.message}" for p in caught.value.problems]
    assert any(f.startswith(expected) for f in found), found


def test_preview_renders_a_type_with_sample_data_as_text_or_html(tmp_path: Path) -> None:
    (tmp_path / "mailgate.yaml").write_text(
        textwrap.dedent("""\
        product_name: Acme Desk
        accounts:
          - {name: helpdesk, connector: memory}
          - {name: de, connector: memory, rule_pack: de-strict}
        """),
        encoding="utf-8",
    )

    text = mailgate("preview", "call_logged", cwd=tmp_path)
    html = mailgate("preview", "summary_calls", "--html", cwd=tmp_path)
    german = mailgate("preview", "summary_calls", "--account", "de", cwd=tmp_path)
    typo = mailgate("preview", "call_loged", cwd=tmp_path)

    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(
        "Subject: [CALL#12] Call 12 has been logged\n\nThank you for contacting Acme Desk."
    )
    assert "<th>Number</th>" in html.stdout and "&lt;urgent&gt;" in html.stdout
    assert "Ihre offenen Meldungen in Acme Desk:" in german.stdout
    assert typo.returncode == 1
    assert "no message type 'call_loged' (did you mean 'call_logged'?)" in typo.stderr
    assert "Traceback" not in text.stderr + html.stderr + german.stderr + typo.stderr


def test_outbox_send_delivers_and_the_outbox_listing_is_unchanged(
    smtp: StartServer, make_desk: MakeDesk
) -> None:
    server = smtp()
    desk = make_desk(plain_server(server))
    desk.deliver("Monitor flickers")
    desk.runtime.close()

    sent = mailgate("outbox", "send", cwd=desk.folder)
    listing = mailgate("outbox", "--json", cwd=desk.folder)
    again = mailgate("outbox", "send", "--json", cwd=desk.folder)

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == "1 sent, 0 deferred, 0 failed; 0 waiting"
    [row] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert (row["status"], row["to"]) == ("sent", "ada@example.com")
    assert {"id", "type", "to", "subject", "body", "message_id", "headers", "status"} <= set(row)
    assert again.stdout == ""
    assert len(server.handler.arrived) == 1


def test_outbox_send_without_a_server_says_so(make_desk: MakeDesk) -> None:
    desk = make_desk(None)
    desk.deliver("Monitor flickers")
    desk.runtime.close()

    result = mailgate("outbox", "send", cwd=desk.folder)

    assert result.returncode == 1
    assert "no outgoing server is configured" in result.stderr and "1 waiting" in result.stderr

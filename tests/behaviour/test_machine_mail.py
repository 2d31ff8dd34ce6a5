"""Machine mail is recognised as such: bounces of every common MTA, auto-replies in the desk's
languages, reports and lists. A bounce whose code the seed rule names (501, 503, 550, 553) is
deleted at once; any other machine mail is processed (it may update a call) but never answered.

The bounce fixtures in ``tests/fixtures/mail/bounces`` are written after each MTA's documented and
commonly seen format: ``deleted_*`` must be deleted, ``kept_*`` processed without a reply,
``delivered_*`` (a success report) processed without a reply.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.mail.message import parse_message

if TYPE_CHECKING:
    from conftest import MakeDesk

BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "mail" / "bounces"
DELETED = sorted(p.name for p in BOUNCES.glob("deleted_*.eml"))
KEPT = [*sorted(p.name for p in BOUNCES.glob("kept_*.eml")), "delivered_success_dsn.eml"]

CALLS = """\
calls:
  - {number: 1042, status: open, user: ada@example.com, assigned_analyst: grace@example.com, summary: Printer}
"""

# (mail program, language, subject) of real auto-replies: never answered
AUTO_REPLY_SUBJECTS = [
    ("Outlook", "en", "Automatic reply: [CALL#1042] Printer jams"),
    ("Exchange 2007", "en", "Out of Office: [CALL#1042] Printer jams"),
    ("Lotus Notes", "en", "Out of Office AutoReply: [CALL#1042] Printer jams"),
    ("Gmail", "en", "Auto reply: Re: [CALL#1042] Printer jams"),
    ("Zimbra", "en", "Auto-Reply: [CALL#1042] Printer jams"),
    ("Outlook", "de", "Automatische Antwort: [CALL#1042] Drucker klemmt"),
    ("Exchange 2007", "de", "Abwesenheitsnotiz: [CALL#1042] Drucker klemmt"),
    ("Outlook", "fr", "Réponse automatique : [CALL#1042] L'imprimante bloque"),
    ("Outlook", "es", "Respuesta automática: [CALL#1042] La impresora se atasca"),
    ("Outlook", "it", "Risposta automatica: [CALL#1042] La stampante si inceppa"),
    ("Outlook", "nl", "Automatisch antwoord: [CALL#1042] Printer loopt vast"),
    ("Outlook", "pt", "Resposta automática: [CALL#1042] A impressora encrava"),
    ("Outlook", "sv", "Autosvar: [CALL#1042] Skrivaren fastnar"),
    ("Outlook", "da", "Automatisk svar: [CALL#1042] Printeren sidder fast"),
    ("Outlook", "no", "Automatisk svar: [CALL#1042] Skriveren henger"),
    ("Outlook", "fi", "Automaattinen vastaus: [CALL#1042] Tulostin jumittaa"),
    ("Outlook", "pl", "Odpowiedź automatyczna: [CALL#1042] Drukarka się zacina"),
    ("Outlook", "cs", "Automatická odpověď: [CALL#1042] Tiskárna se zasekává"),
    ("Outlook", "ru", "Автоматический ответ: [CALL#1042] Принтер зажевал бумагу"),
    ("Outlook", "uk", "Автоматична відповідь: [CALL#1042] Принтер заїдає"),
    ("Outlook", "ja", "自動応答: [CALL#1042] プリンターの紙詰まり"),
    ("Outlook", "zh", "自动答复: [CALL#1042] 打印机卡纸"),
    ("Outlook", "zh-tw", "自動回覆: [CALL#1042] 印表機卡紙"),
    ("Outlook", "ko", "자동 회신: [CALL#1042] 프린터 용지 걸림"),
    ("Outlook", "tr", "Otomatik yanıt: [CALL#1042] Yazıcı sıkışıyor"),
]

PERSON_SUBJECTS = [  # look like the words above, but a person wrote them
    "Out of office next week: who covers the printer?",
    "Re: [CALL#1042] Printer jams",
    "Automatic replies do not work in my Outlook",
]


def _mail(subject: str, *headers: str, body: str = "I am away until Monday.") -> bytes:
    head = [
        "From: Ada <ada@example.com>",
        "To: helpdesk@desk.example",
        f"Subject: {subject}",
        "Message-ID: <machine-test@mail.example>",
        "Date: Mon, 02 Mar 2026 09:30:00 +0000",
        "Content-Type: text/plain; charset=utf-8",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()


@pytest.mark.parametrize("fixture", DELETED)
def test_fatal_bounce_of_every_mta_is_deleted(make_desk: MakeDesk, fixture: str) -> None:
    desk = make_desk(CALLS, flags={"log_new_call_on_invalid_number": True})

    result = desk.deliver_raw((BOUNCES / fixture).read_bytes())

    assert (result.outcome, result.rule) == ("bounce_deleted", "delete_fatal_bounce")
    assert desk.outbox() == [] and not desk.has_call(1043)


@pytest.mark.parametrize("fixture", KEPT)
def test_non_fatal_bounce_and_success_report_are_kept_and_never_answered(
    make_desk: MakeDesk, fixture: str
) -> None:
    desk = make_desk(CALLS)

    result = desk.deliver_raw((BOUNCES / fixture).read_bytes())

    assert result.outcome != "bounce_deleted"
    assert result.outcome in ("logged", "updated")
    assert desk.outbox() == []


def test_at_least_98_percent_of_fatal_bounces_are_read_with_a_code_the_seed_rule_deletes() -> None:
    codes = [parse_message((BOUNCES / name).read_bytes()).bounce_code for name in DELETED]

    deleted = sum(code in (501, 503, 550, 553) for code in codes)

    assert len(DELETED) >= 20
    assert deleted / len(DELETED) >= 0.98, dict(zip(DELETED, codes, strict=True))


@pytest.mark.parametrize(("client", "language", "subject"), AUTO_REPLY_SUBJECTS)
def test_auto_reply_subject_updates_the_call_but_gets_no_reply(
    make_desk: MakeDesk, client: str, language: str, subject: str
) -> None:
    desk = make_desk(CALLS)

    result = desk.deliver_raw(_mail(subject))

    assert (result.outcome, result.number) == ("updated", 1042), (client, language)
    assert "I am away until Monday." in desk.call(1042)["history"][-1]["text"]
    assert desk.outbox() == []


@pytest.mark.parametrize("subject", PERSON_SUBJECTS)
def test_a_persons_subject_that_mentions_such_words_is_answered(make_desk: MakeDesk, subject: str) -> None:
    desk = make_desk(CALLS)

    result = desk.deliver_raw(_mail(subject))

    assert result.outcome in ("logged", "updated")
    assert len(desk.outbox()) == 1


@pytest.mark.parametrize(
    "header",
    [
        "X-Auto-Response-Suppress: All",
        "X-Auto-Response-Suppress: OOF, AutoReply",
        "X-Autoreply: yes",
        "X-Autorespond: vacation",
        "List-Id: Printers <printers.lists.example.com>",
        "List-Unsubscribe: <mailto:leave@lists.example.com>",
    ],
)
def test_machine_headers_update_the_call_but_get_no_reply(make_desk: MakeDesk, header: str) -> None:
    desk = make_desk(CALLS)

    result = desk.deliver_raw(_mail("Re: [CALL#1042] Printer jams", header))

    assert (result.outcome, result.number) == ("updated", 1042)
    assert desk.outbox() == []


def _report(report_type: str, inner_type: str, inner: str) -> bytes:
    return f"""\
From: Mail Provider <feedback@provider.example>
To: helpdesk@desk.example
Subject: Re: [CALL#1042] Printer jams
Message-ID: <report-{report_type}@provider.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type={report_type}; boundary="R"

--R
Content-Type: text/plain

This is a report about a message you sent.
--R
Content-Type: {inner_type}

{inner}
--R--
""".replace("\n", "\r\n").encode()


def test_arf_feedback_report_is_never_answered(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    arf = "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1"

    result = desk.deliver_raw(_report("feedback-report", "message/feedback-report", arf))

    assert result.outcome in ("updated", "ignored")
    assert desk.outbox() == []


def test_read_receipt_is_never_answered(make_desk: MakeDesk) -> None:
    desk = make_desk(CALLS)
    mdn = (
        "Reporting-UA: mail.example; Outlook\nFinal-Recipient: rfc822;ada@example.com\n"
        "Disposition: manual-action/MDN-sent-manually; displayed"
    )

    result = desk.deliver_raw(_report("disposition-notification", "message/disposition-notification", mdn))

    assert result.outcome in ("updated", "ignored")
    assert desk.outbox() == []

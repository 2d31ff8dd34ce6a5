"""Reply truncation never loses the person's words: top, bottom and interleaved replies from the
common mail programs in the desk's 19 languages. Each case is written as that program writes its
quote header (Gmail, Apple Mail, Thunderbird, Outlook desktop/web/Mac, iOS, Android Gmail, K-9,
Yahoo, Roundcube, Zimbra, Lotus Notes, Evolution); our own mail is the quoted copy.
"""

# ruff: noqa: E501  (the tables hold quote headers as the mail programs write them, one per line)

from __future__ import annotations

import pytest

from engine.mail.reply_text import new_text_of_reply

OURS = ["Your email has been logged as call 7: Printer jams.", "Thank you for contacting the service desk."]
DESK = "Service Desk <helpdesk@example.com>"

# (program, language, quote header as it writes it): a header followed by our mail quoted with ">"
QUOTED_STYLE = [
    ("Gmail", "en", f"On Mon, Dec 1, 2025 at 10:00 AM {DESK} wrote:"),
    ("Gmail", "de", f"Am Mo., 1. Dez. 2025 um 10:00 Uhr schrieb {DESK}:"),
    ("Gmail", "fr", f"Le lun. 1 déc. 2025 à 10:00, {DESK} a écrit :"),
    ("Gmail", "es", f"El lun, 1 dic 2025 a las 10:00, {DESK} escribió:"),
    ("Gmail", "it", f"Il giorno lun 1 dic 2025 alle ore 10:00 {DESK} ha scritto:"),
    ("Gmail", "nl", f"Op ma 1 dec 2025 om 10:00 schreef {DESK}:"),
    ("Gmail", "pt", f"Em seg., 1 de dez. de 2025 às 10:00, {DESK} escreveu:"),
    ("Gmail", "sv", f"Den mån 1 dec. 2025 kl 10:00 skrev {DESK}:"),
    ("Gmail", "da", f"Den man. 1. dec. 2025 kl. 10.00 skrev {DESK}:"),
    ("Gmail", "no", f"man. 1. des. 2025 kl. 10:00 skrev {DESK}:"),
    ("Gmail", "fi", f"ma 1. jouluk. 2025 klo 10.00 {DESK} kirjoitti:"),
    ("Gmail", "pl", f"pon., 1 gru 2025 o 10:00 {DESK} napisał(a):"),
    ("Gmail", "cs", f"po 1. 12. 2025 v 10:00 odesílatel {DESK} napsal:"),
    ("Gmail", "ru", f"пн, 1 дек. 2025 г. в 10:00, {DESK}:"),
    ("Gmail", "uk", f"пн, 1 груд. 2025 р. о 10:00 {DESK} пише:"),
    ("Gmail", "ja", f"2025年12月1日(月) 10:00 {DESK}:"),
    ("Gmail", "zh", f"{DESK} 于2025年12月1日周一 10:00写道："),
    ("Gmail", "ko", f"2025년 12월 1일 (월) 오전 10:00, {DESK}님이 작성:"),
    ("Gmail", "tr", f"{DESK}, 1 Ara 2025 Pzt, 10:00 tarihinde şunu yazdı:"),
    ("Apple Mail", "en", f"> On 1 Dec 2025, at 10:00, {DESK} wrote:".removeprefix("> ")),
    ("Apple Mail", "de", f"Am 01.12.2025 um 10:00 schrieb {DESK}:"),
    ("iOS Mail", "fr", f"Le 1 déc. 2025 à 10:00, {DESK} a écrit :"),
    ("Thunderbird", "en", f"On 01/12/2025 10:00, {DESK} wrote:"),
    ("Thunderbird", "de", "Am 01.12.25 um 10:00 schrieb Service Desk:"),
    ("Thunderbird", "pl", "W dniu 1.12.2025 o 10:00, Service Desk pisze:".replace("pisze", "napisał")),
    ("Thunderbird", "ru", "01.12.2025 10:00, Service Desk пишет:"),
    ("Thunderbird", "uk", "01.12.2025 10:00, Service Desk написав:"),
    ("Thunderbird", "cs", "Dne 01. 12. 25 v 10:00 Service Desk napsal(a):"),
    ("K-9 Mail", "en", f'30.09.2017, 18.30, "{DESK.split(" <")[0]}" <helpdesk@example.com>:'),
    ("Android Gmail", "ru", "1 дек. 2025 г. 10:00 пользователь Service Desk <helpdesk@example.com> написал:"),
    (
        "Yahoo",
        "en",
        "On Monday, December 1, 2025, 10:00:00 AM GMT, Service Desk <helpdesk@example.com> wrote:",
    ),
    ("Roundcube", "en", "On 2025-12-01 10:00, Service Desk wrote:"),
    ("Roundcube", "de", "Am 2025-12-01 10:00, schrieb Service Desk:"),
    ("Zimbra", "fr", "----- Mail original -----"),
    ("Evolution", "en", "On Mon, 2025-12-01 at 10:00 +0000, Service Desk wrote:"),
    ("Outlook for Mac", "nl", "Op 01-12-2025 10:00 heeft Service Desk <helpdesk@example.com> geschreven:"),
    ("Yahoo", "ja", "2025年12月1日 月曜日 10:00:00 GMT+9、Service Desk <helpdesk@example.com> のメッセージ:"),
    ("Outlook.com", "zh-tw", "於 2025年12月1日 週一 上午10:00，Service Desk <helpdesk@example.com> 寫道："),
    (
        "Gmail",
        "ko-long",
        "2025년 12월 1일 (월) 오전 10:00, Service Desk <helpdesk@example.com>님이 작성하였습니다:",
    ),
    ("Android Gmail", "tr", "Service Desk <helpdesk@example.com> şunu yazdı (1 Ara 2025 10:00):"),
]

# (program, language, header block lines): Outlook's unquoted copy below a header block
OUTLOOK_STYLE = [
    ("Outlook", "en", ["From: Service Desk <helpdesk@example.com>", "Sent: Monday, December 1, 2025 10:00 AM",
                       "To: Ada <ada@example.com>", "Subject: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "de", ["Von: Service Desk <helpdesk@example.com>", "Gesendet: Montag, 1. Dezember 2025 10:00",
                       "An: Ada <ada@example.com>", "Betreff: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "fr", ["De : Service Desk <helpdesk@example.com>", "Envoyé : lundi 1 décembre 2025 10:00",
                       "À : Ada <ada@example.com>", "Objet : [CALL#7] Call 7 has been logged"]),
    ("Outlook", "es", ["De: Service Desk <helpdesk@example.com>", "Enviado: lunes, 1 de diciembre de 2025 10:00",
                       "Para: Ada <ada@example.com>", "Asunto: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "it", ["Da: Service Desk <helpdesk@example.com>", "Inviato: lunedì 1 dicembre 2025 10:00",
                       "A: Ada <ada@example.com>", "Oggetto: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "nl", ["Van: Service Desk <helpdesk@example.com>", "Verzonden: maandag 1 december 2025 10:00",
                       "Aan: Ada <ada@example.com>", "Onderwerp: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "pt", ["De: Service Desk <helpdesk@example.com>", "Enviado: segunda-feira, 1 de dezembro de 2025 10:00",
                       "Para: Ada <ada@example.com>", "Assunto: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "sv", ["Från: Service Desk <helpdesk@example.com>", "Skickat: den 1 december 2025 10:00",
                       "Till: Ada <ada@example.com>", "Ämne: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "da", ["Fra: Service Desk <helpdesk@example.com>", "Sendt: 1. december 2025 10:00",
                       "Til: Ada <ada@example.com>", "Emne: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "no", ["Fra: Service Desk <helpdesk@example.com>", "Sendt: mandag 1. desember 2025 10:00",
                       "Til: Ada <ada@example.com>", "Emne: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "fi", ["Lähettäjä: Service Desk <helpdesk@example.com>", "Lähetetty: maanantai 1. joulukuuta 2025 10.00",
                       "Vastaanottaja: Ada <ada@example.com>", "Aihe: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "pl", ["Od: Service Desk <helpdesk@example.com>", "Wysłano: poniedziałek, 1 grudnia 2025 10:00",
                       "Do: Ada <ada@example.com>", "Temat: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "cs", ["Od: Service Desk <helpdesk@example.com>", "Odesláno: pondělí 1. prosince 2025 10:00",
                       "Komu: Ada <ada@example.com>", "Předmět: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "ru", ["От: Service Desk <helpdesk@example.com>", "Отправлено: 1 декабря 2025 г. 10:00",
                       "Кому: Ada <ada@example.com>", "Тема: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "uk", ["Від: Service Desk <helpdesk@example.com>", "Надіслано: 1 грудня 2025 р. 10:00",
                       "Кому: Ada <ada@example.com>", "Тема: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "ja", ["差出人: Service Desk <helpdesk@example.com>", "送信日時: 2025年12月1日 10:00",
                       "宛先: Ada <ada@example.com>", "件名: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "zh", ["发件人: Service Desk <helpdesk@example.com>", "发送时间: 2025年12月1日 10:00",
                       "收件人: Ada <ada@example.com>", "主题: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "ko", ["보낸 사람: Service Desk <helpdesk@example.com>", "보낸 날짜: 2025년 12월 1일 월요일 오전 10:00",
                       "받는 사람: Ada <ada@example.com>", "제목: [CALL#7] Call 7 has been logged"]),
    ("Outlook", "tr", ["Kimden: Service Desk <helpdesk@example.com>", "Gönderildi: 1 Aralık 2025 Pazartesi 10:00",
                       "Kime: Ada <ada@example.com>", "Konu: [CALL#7] Call 7 has been logged"]),
    ("Outlook on the web", "en", ["________________________________", "From: Service Desk <helpdesk@example.com>",
                                  "Sent: Monday, December 1, 2025 10:00", "To: Ada <ada@example.com>"]),
    ("Outlook 2003", "en", ["-----Original Message-----", "From: Service Desk [mailto:helpdesk@example.com]",
                            "Sent: Monday, December 01, 2025 10:00 AM", "To: Ada"]),
    ("Outlook 2003", "de", ["-----Ursprüngliche Nachricht-----", "Von: Service Desk [mailto:helpdesk@example.com]",
                            "Gesendet: Montag, 1. Dezember 2025 10:00", "An: Ada"]),
    ("Lotus Notes", "en", ["-----Service Desk <helpdesk@example.com> wrote: -----"]),
    ("Outlook 2003", "fr", ["-----Message d'origine-----", "De : Service Desk", "Envoyé : lundi 1 décembre 2025 10:00"]),
    ("Outlook 2003", "es", ["-----Mensaje original-----", "De: Service Desk", "Enviado el: lunes, 1 de diciembre de 2025"]),
]  # fmt: skip

NEW_TOP = ["The printer now shows error E42.", "It started after the firmware update."]
NEW_BOTTOM = ["Also the scanner on floor 3 is offline."]
SIGNATURE = ["-- ", "Ada Lovelace", "Accounts, room 12"]
SENT_FROM = ["Sent from my iPhone", "Gesendet von meinem iPad", "Envoyé de mon iPhone", "iPhoneから送信"]


def _quoted() -> list[str]:
    return [f"> {line}" for line in OURS]


def _assert_kept_and_removed(text: str, new: list[str]) -> None:
    for line in new:
        assert line in text, f"the person's line {line!r} was lost: {text!r}"
    for line in OURS:
        assert line not in text, f"our quoted line {line!r} was kept: {text!r}"


@pytest.mark.parametrize(("program", "language", "header"), QUOTED_STYLE)
def test_top_posted_reply_keeps_the_new_text_and_drops_the_quote(
    program: str, language: str, header: str
) -> None:
    body = "\n".join([*NEW_TOP, "", header, *_quoted()])

    _assert_kept_and_removed(new_text_of_reply(body), NEW_TOP)


@pytest.mark.parametrize(("program", "language", "header"), QUOTED_STYLE)
def test_bottom_posted_reply_keeps_the_text_below_the_quote(program: str, language: str, header: str) -> None:
    body = "\n".join(["Hi,", header, *_quoted(), "", *NEW_BOTTOM])

    _assert_kept_and_removed(new_text_of_reply(body), ["Hi,", *NEW_BOTTOM])


@pytest.mark.parametrize(("program", "language", "header"), QUOTED_STYLE)
def test_interleaved_reply_keeps_every_answer_between_the_quoted_lines(
    program: str, language: str, header: str
) -> None:
    body = "\n".join([header, f"> {OURS[0]}", "Yes, and E42 too.", f"> {OURS[1]}", "You are welcome."])

    _assert_kept_and_removed(new_text_of_reply(body), ["Yes, and E42 too.", "You are welcome."])


@pytest.mark.parametrize(("program", "language", "block"), OUTLOOK_STYLE)
def test_outlook_reply_drops_the_header_block_and_the_unquoted_copy(
    program: str, language: str, block: list[str]
) -> None:
    body = "\n".join([*NEW_TOP, "", *block, "", *OURS])

    text = new_text_of_reply(body)

    _assert_kept_and_removed(text, NEW_TOP)
    assert block[-1] not in text


def test_the_issues_example_keeps_the_text_below_the_quote() -> None:
    body = (
        "Hi,\nOn Mon, 1 Dec 2025 at 10:00, mailgate <helpdesk@example.com> wrote:\n"
        "> Your email has been logged as call 7\n\nThe printer now shows error E42."
    )

    assert new_text_of_reply(body) == "Hi,\n\nThe printer now shows error E42."


def test_a_signature_is_cut_but_the_text_after_the_quote_stays() -> None:
    body = "\n".join([*NEW_TOP, *SIGNATURE, f"On Mon, 1 Dec 2025 at 10:00, {DESK} wrote:", *_quoted()])

    text = new_text_of_reply(body)

    _assert_kept_and_removed(text, NEW_TOP)
    assert "Accounts, room 12" not in text


@pytest.mark.parametrize("line", SENT_FROM)
def test_a_mobile_clients_sent_from_line_is_cut(line: str) -> None:
    text = new_text_of_reply("\n".join([*NEW_TOP, "", line, "", f"On Mon, {DESK} wrote:", *_quoted()]))

    _assert_kept_and_removed(text, NEW_TOP)
    assert line not in text


def test_a_mail_that_is_all_quote_is_kept_whole() -> None:
    body = "\n".join([f"On Mon, 1 Dec 2025 at 10:00, {DESK} wrote:", *_quoted()])

    assert new_text_of_reply(body) == body


def test_a_wrote_line_without_a_quote_after_it_is_kept() -> None:
    body = "My colleague wrote:\nplease restart the spooler.\nIt did not help."

    assert new_text_of_reply(body) == body


def test_at_least_90_percent_of_quoted_copies_are_removed_and_no_words_are_lost() -> None:
    cases = [("\n".join([*NEW_TOP, "", h, *_quoted()]), NEW_TOP) for _, _, h in QUOTED_STYLE] + [
        ("\n".join([*NEW_TOP, "", *b, "", *OURS]), NEW_TOP) for _, _, b in OUTLOOK_STYLE
    ]

    results = [new_text_of_reply(body) for body, _ in cases]

    assert all(all(line in text for line in new) for text, (_, new) in zip(results, cases, strict=True))
    removed = sum(all(line not in text for line in OURS) for text in results)
    assert len(cases) >= 60 and removed / len(cases) >= 0.9


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for Android",
        "Sent from Mail for Windows",
        "Von meinem iPhone gesendet",
        "Enviado desde mi dispositivo móvil",
        "从我的iPhone发送",
        "내 iPhone에서 보냄",
    ],
)
def test_more_mobile_clients_sent_from_lines_are_cut(line: str) -> None:
    text = new_text_of_reply("\n".join([*NEW_TOP, "", line, "", f"On Mon, {DESK} wrote:", *_quoted()]))

    _assert_kept_and_removed(text, NEW_TOP)
    assert line not in text


OUTLOOK_COPY = """Done, see my answer below.

From: Service Desk <helpdesk@example.com>
Sent: Monday, December 1, 2025 10:00 AM
To: Ada <ada@example.com>
Subject: [CALL#7] Call 7 has been logged

Your email has been logged as call 7: Printer jams.
Is the printer connected to the network?
Yes, it is on VLAN 20, port 14.
Thank you for contacting the service
desk.

From: Ada <ada@example.com>
Sent: Monday, December 1, 2025 9:55 AM
Subject: Printer jams

The printer jams on every page.
"""
OUR_MAIL = (
    "Your email has been logged as call 7: Printer jams.\n"
    "Is the printer connected to the network?\n\n"
    "Thank you for contacting the service desk.\n"
)


def test_words_typed_into_outlooks_copy_of_our_mail_are_kept_and_our_lines_go() -> None:
    asked: list[int] = []

    def ours() -> list[str]:
        asked.append(1)
        return [OUR_MAIL]

    assert new_text_of_reply(OUTLOOK_COPY, ours) == (
        "Done, see my answer below.\n\nYes, it is on VLAN 20, port 14."
    )  # our lines go even where Outlook wrapped them anew; the older copy below goes too
    assert asked == [1]
    assert new_text_of_reply("Thanks!\n\n> quoted\n", ours) == "Thanks!"
    assert asked == [1]  # asked only for a reply holding an unquoted copy


def test_without_the_mail_we_sent_an_outlook_copy_goes_whole() -> None:
    assert new_text_of_reply(OUTLOOK_COPY) == "Done, see my answer below."
    assert new_text_of_reply(OUTLOOK_COPY, lambda: []) == "Done, see my answer below."

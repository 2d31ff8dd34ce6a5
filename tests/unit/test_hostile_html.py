"""Hostile HTML bodies are read in time linear in their size, and ordinary HTML reads as before.

Python's ``html.parser`` looks for the end of an unclosed construct (a start tag without ``>``, a
comment without ``-->``) to the end of the document, once for every such construct: 80 KB of
``<a b='>'`` took 17 s, 300 KB would take half an hour, and all of it is the mail's sender's choice.
"""

from __future__ import annotations

import time

import pytest

from engine.mail.message import parse_message

UNCLOSED = {
    "start tags": "<a b='>'",
    "comments among tags": "<!-- <a ",
    "comments in a textarea": "<textarea><!--",
    "marked sections": "<![CDATA[",
}


def _html_mail(html: str) -> bytes:
    head = "From: ada@example.com\nSubject: hi\nMessage-ID: <h@example.com>\nContent-Type: text/html\n\n"
    return (head + html).encode()


@pytest.mark.parametrize("pattern", list(UNCLOSED.values()), ids=list(UNCLOSED))
def test_an_html_body_of_unclosed_constructs_is_read_in_linear_time(pattern: str) -> None:
    started = time.perf_counter()
    parse_message(_html_mail("<p>Hello</p>" + pattern * (200_000 // len(pattern))))
    assert time.perf_counter() - started < 3.0


def test_after_a_construct_that_never_ends_the_text_is_kept_and_a_script_is_not() -> None:
    read = parse_message(_html_mail("<p>Hello</p><a href='x" + "<b>more</b> words " * 400))
    assert read.body.startswith("Hello\n\n<a href='x more words more words")
    assert "HTML has a tag or comment that never ends" in " ".join(read.problems)
    script = parse_message(_html_mail("<p>Hello</p><script>" + "var secret = '<a';" * 400))
    assert script.body.strip() == "Hello"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello <b>Ada</b></p><!-- a comment -->", "Hello Ada"),
        ("<div>one</div><div>two &amp; three</div>", "one\ntwo & three"),
        ("<p>a &lt; b</p>", "a < b"),
        ("<p>kept</p><a href='x", "kept\n\n<a href='x"),
        ("<p>kept</p><!-- never closed", "kept\n\n<!-- never closed"),
    ],
)
def test_html_reads_as_it_did(html: str, text: str) -> None:
    assert parse_message(_html_mail(html)).body.strip() == text

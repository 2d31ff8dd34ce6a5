"""Message templates (Jinja2): a subject, a text body and an optional HTML body per message type.

Templates are compiled once at load (their code kept between runs by ``engine.config.kept``) with
``StrictUndefined``, so a variable a template needs but is not given is an error, never an empty
string in a customer's inbox. The HTML body is rendered with autoescaping (a summary line with
``<`` in it stays text); a type without one gets HTML made from its text: each paragraph a
``<p>``, each line break a ``<br>``.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import marshal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from engine.config import kept
from engine.config.yaml_source import Problems, is_mapping, position
from engine.errors import MailgateError

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=True, keep_trailing_newline=True
)
_PARTS = ("subject", "body", "html")


SAMPLE_VARIABLES: dict[str, Any] = {
    "product_name": "mailgate",
    "account": "helpdesk",
    "entity": "call",
    "number": 12,
    "status": "open",
    "summary": "Printer on floor 3 is jammed",
    "sender_name": "Ada Lovelace",
    "sender_email": "ada@example.com",
    "incoming_subject": "Re: [CALL#12] Printer",
    "items": [
        {
            "number": 12,
            "status": "open",
            "summary": "Printer on floor 3 is jammed",
            "updated_at": "2026-01-01 10:00",
        }
    ],
    "item_kind": "calls",
    "authentication": "dmarc=fail header.from=example.com (Authentication-Results by mx.example.com)",
    "authentication_method": "none",
}


def sample_variables(
    type_name: str, product_name: str = "mailgate", account: str = "helpdesk"
) -> dict[str, Any]:
    """Sample values to preview a template with; a ``summary_*`` type gets a list of items instead of one."""
    variables = {**SAMPLE_VARIABLES, "product_name": product_name, "account": account}
    if type_name.startswith("summary_"):
        kind = type_name.removeprefix("summary_")
        variables.update(
            entity=None,
            number=None,
            status=None,
            summary="",
            item_kind=kind,
            items=[
                {"number": 12, "status": "open", "summary": "Printer on floor 3 is jammed",
                 "updated_at": "2026-01-01 10:00"},
                {"number": 15, "status": "open", "summary": "VPN drops every hour <urgent>",
                 "updated_at": "2026-01-02 16:45"},
                {"number": 21, "status": "open", "summary": "Neue Tastatur für Jürgen",
                 "updated_at": "2026-01-05 08:12"},
            ],
        )  # fmt: skip
    return variables


class TemplateError(MailgateError):
    """A template could not be rendered (e.g. it uses a variable that was not given)."""


@dataclass(frozen=True)
class RenderedMessage:
    """One message's texts: the one-line subject, the plain text and the HTML document."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class MessageTemplate:
    """The subject, text and (optional) HTML templates of one message type."""

    type: str
    subject_source: str
    body_source: str
    subject: jinja2.Template
    body: jinja2.Template
    where: str = ""
    html_source: str | None = None
    html: jinja2.Template | None = None

    def render(self, variables: Mapping[str, Any]) -> tuple[str, str]:
        """Render (subject, body); TemplateError names the type and the missing piece."""
        rendered = self.render_message(variables, with_html=False)
        return rendered.subject, rendered.text

    def render_message(self, variables: Mapping[str, Any], *, with_html: bool = True) -> RenderedMessage:
        """Render the subject, the text and the HTML (its own template, or made from the text)."""
        try:
            subject = " ".join(self.subject.render(variables).split())
            text = self.body.render(variables)
            html = ""
            if with_html:
                html = html_document(self.html.render(variables)) if self.html else text_to_html(text)
        except jinja2.TemplateError as exc:
            where = f" (defined at {self.where})" if self.where else ""
            raise TemplateError(f"template {self.type!r}: {exc}{where}") from None
        return RenderedMessage(subject, text, html)


def html_document(fragment: str) -> str:
    """An HTML fragment as a whole UTF-8 document (a text that already is one is kept as it is)."""
    if re.match(r"\s*(<!doctype|<html)", fragment, re.IGNORECASE):
        return fragment
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body>\n'
        f"{fragment.strip()}\n</body></html>\n"
    )


def text_to_html(text: str) -> str:
    """HTML made from a plain text: escaped, a ``<p>`` per paragraph and a ``<br>`` per line break."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text.strip()) if p.strip()]
    blocks = [
        "<p>" + "<br>\n".join(html_lib.escape(line) for line in p.split("\n")) + "</p>" for p in paragraphs
    ]
    return html_document("\n".join(blocks))


def compile_line(source: str) -> jinja2.Template:
    """A one-line text template (a reason, say); TemplateError on a syntax mistake."""
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.message} (in {source!r})") from None


def render_line(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    """Render a ``compile_line`` template as one line; TemplateError says why it failed."""
    try:
        return " ".join(template.render(variables).split())
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from None


def compile_templates(
    node: Any, problems: Problems, sample: Mapping[str, Any] | None = None
) -> dict[str, MessageTemplate]:
    """Compile the ``templates:`` mapping of a pack, recording mistakes at their position.

    With ``sample`` variables, each text is also rendered once, so a template that uses a
    variable that does not exist (or fails on real values) is refused where it is written.
    Templates with any mistake are left out of the result.
    """
    compiled: dict[str, MessageTemplate] = {}
    if node is None:
        return compiled
    if not is_mapping(node):
        problems.at(node, None, "templates must map a message type to {subject, body, html}")
        return compiled
    for type_name, spec in node.items():
        if not is_mapping(spec):
            problems.at(node, type_name, f"template {type_name!r} must be a mapping with subject and body")
            continue
        for key in spec:
            if key not in _PARTS:
                problems.at_key(
                    spec, key, f"template {type_name!r}: unknown key {key!r} (use subject, body, html)"
                )
        sources: dict[str, str] = {}
        parsed: dict[str, jinja2.Template] = {}
        for part in _PARTS:
            text = spec.get(part)
            if part == "html" and text is None:
                continue
            if not isinstance(text, str):
                problems.at(
                    spec, part if part in spec else None, f"template {type_name!r} needs a {part} text"
                )
                continue
            try:
                parsed[part] = _template(_HTML_ENV if part == "html" else _ENV, text)
                sources[part] = text
            except jinja2.TemplateSyntaxError as exc:
                problems.at(
                    spec, part, f"template {type_name!r} {part}: {exc.message} (template line {exc.lineno})"
                )
                continue
            failure = _sample_failure(parsed[part], sample)
            if failure:
                del parsed[part]
                problems.at(spec, part, f"template {type_name!r} {part}: {failure}")
        if all(part in parsed for part in _PARTS if part != "html" or spec.get("html") is not None):
            line, col = position(node, type_name)
            compiled[str(type_name)] = MessageTemplate(
                str(type_name),
                sources["subject"],
                sources["body"],
                parsed["subject"],
                parsed["body"],
                f"{problems.filename}:{line}:{col}",
                sources.get("html"),
                parsed.get("html"),
            )
    return compiled


TEMPLATE_CODE = "template-code"  # the kind of a kept template's compiled code
TEMPLATES_KEPT = 1024  # a pack has about 50 texts


def _template(env: SandboxedEnvironment, source: str) -> jinja2.Template:
    """``env.from_string(source)``, its compiled code kept between processes (``engine.config.kept``).

    TemplateSyntaxError as ``from_string`` raises it: only code that compiled is kept. The code
    is marshal's form, checked against its SHA-256 before it is read back.
    """
    sources = (jinja2.__version__, _settings(env), source)
    found, entry = kept.read_entry(TEMPLATE_CODE, sources)
    code = _code_of(entry) if found else None
    if code is None:
        code = env.compile(source)
        data = marshal.dumps(code)
        entry = (hashlib.sha256(data).digest(), data)
        kept.write_entry(TEMPLATE_CODE, sources, entry, entries_kept=TEMPLATES_KEPT)
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def _settings(env: SandboxedEnvironment) -> str:
    """Everything of ``env`` that the code it compiles depends on."""
    names = [
        "block_start_string",
        "block_end_string",
        "variable_start_string",
        "variable_end_string",
        "comment_start_string",
        "comment_end_string",
        "line_statement_prefix",
        "line_comment_prefix",
        "trim_blocks",
        "lstrip_blocks",
        "newline_sequence",
        "keep_trailing_newline",
        "optimized",
        "is_async",
        "autoescape",
        "undefined",
        "finalize",
    ]
    values = [getattr(env, name) for name in names]
    return repr((type(env), values, sorted(env.extensions), sorted(env.filters), sorted(env.tests)))


def _code_of(entry: Any) -> CodeType | None:
    """The code in a kept ``(sha256, marshal data)`` entry; None if it is anything else."""
    try:
        digest, data = entry
        if hashlib.sha256(data).digest() != digest:
            return None
        code = marshal.loads(data)
    except Exception:
        return None
    return code if isinstance(code, CodeType) else None


def _sample_failure(template: jinja2.Template, sample: Mapping[str, Any] | None) -> str | None:
    """Why rendering with the sample variables fails, or None."""
    if sample is None:
        return None
    try:
        template.render(sample)
    except jinja2.UndefinedError as exc:
        return f"{exc.message}; the variables are {', '.join(sorted(sample))}"
    except Exception as exc:  # a template is the admin's code: any failure is their mistake to see
        return f"fails on sample values: {type(exc).__name__}: {exc}"
    return None

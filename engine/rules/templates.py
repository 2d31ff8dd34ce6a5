"""Message templates (Jinja2): one subject and one text body per message type, held in the rule pack.

Templates are compiled once at load with ``StrictUndefined``, so a variable a template needs but
is not given is an error, never an empty string in a customer's inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import MailgateError
from engine.yamlsource import Problems, is_mapping, position

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateError(MailgateError):
    """A template could not be rendered (e.g. it uses a variable that was not given)."""


@dataclass(frozen=True)
class MessageTemplate:
    """The subject and body templates of one message type."""

    type: str
    subject_source: str
    body_source: str
    subject: jinja2.Template
    body: jinja2.Template
    where: str = ""

    def render(self, variables: Mapping[str, Any]) -> tuple[str, str]:
        """Render (subject, body); TemplateError names the type and the missing piece."""
        try:
            subject = " ".join(self.subject.render(variables).split())
            body = self.body.render(variables)
        except jinja2.TemplateError as exc:
            where = f" (defined at {self.where})" if self.where else ""
            raise TemplateError(f"template {self.type!r}: {exc}{where}") from None
        return subject, body


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
        problems.at(node, None, "templates must map a message type to {subject, body}")
        return compiled
    for type_name, spec in node.items():
        if not is_mapping(spec):
            problems.at(node, type_name, f"template {type_name!r} must be a mapping with subject and body")
            continue
        for key in spec:
            if key not in ("subject", "body"):
                problems.at_key(spec, key, f"template {type_name!r}: unknown key {key!r} (use subject, body)")
        sources: dict[str, str] = {}
        parsed: dict[str, jinja2.Template] = {}
        for part in ("subject", "body"):
            text = spec.get(part)
            if not isinstance(text, str):
                problems.at(
                    spec, part if part in spec else None, f"template {type_name!r} needs a {part} text"
                )
                continue
            try:
                parsed[part] = _ENV.from_string(text)
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
        if len(parsed) == 2:
            line, col = position(node, type_name)
            compiled[str(type_name)] = MessageTemplate(
                str(type_name),
                sources["subject"],
                sources["body"],
                parsed["subject"],
                parsed["body"],
                f"{problems.filename}:{line}:{col}",
            )
    return compiled


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

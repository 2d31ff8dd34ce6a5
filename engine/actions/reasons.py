"""Saying why a message got its outcome: the result's ``reason`` and the ledger's."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2

from engine.actions.base import Action, ActionContext
from engine.actions.messages import template_variables
from engine.rules.templates import SAMPLE_VARIABLES, TemplateError, compile_line, render_line

if TYPE_CHECKING:
    from engine.rules.pack import RulePack


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> jinja2.Template:
    return compile_line(text)


@dataclass(frozen=True)
class GiveReason(Action):
    """Record why: ``text`` (a template; {{ authentication }} is the evidence) is the outcome's reason."""

    name = "give_reason"
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("text must say why")
        try:
            _compiled(self.text)
        except TemplateError as exc:
            raise ValueError(f"text: {exc}") from None

    def check(self, pack: RulePack) -> list[str]:
        """The text must render with the variables a message has."""
        try:
            render_line(_compiled(self.text), SAMPLE_VARIABLES)
        except TemplateError as exc:
            return [f"give_reason text: {exc}; the variables are {', '.join(sorted(SAMPLE_VARIABLES))}"]
        return []

    def run(self, ctx: ActionContext) -> None:
        """Set the reason the result and the ledger entry carry."""
        ctx.reason = render_line(_compiled(self.text), template_variables(ctx))

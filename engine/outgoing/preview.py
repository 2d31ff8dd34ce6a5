"""``mailgate preview TYPE``: a message template rendered with sample data, as it would be sent."""

from __future__ import annotations

from engine.actions.messages import with_tag
from engine.config.model import Config
from engine.errors import MailgateError, did_you_mean
from engine.outgoing.outbox import entity_tag
from engine.rules.pack import load_pack
from engine.rules.templates import RenderedMessage, sample_variables


def preview_message(config: Config, type_name: str, account_name: str | None = None) -> RenderedMessage:
    """Render one message type of an account's pack (the first account's, else the bundled default)."""
    account = config.account(account_name) if account_name else next(iter(config.accounts), None)
    pack = load_pack(account.rule_pack if account else "default", config.base_dir)
    template = pack.templates.get(type_name)
    if template is None:
        known = sorted(pack.templates)
        raise MailgateError(
            f"no message type {type_name!r}{did_you_mean(type_name, known)} in rule pack {pack.name!r}; "
            f"types: {', '.join(known)}"
        )
    variables = sample_variables(type_name, config.product_name, account.name if account else "helpdesk")
    rendered = template.render_message(variables)
    if variables["entity"] == "call" and variables["number"] is not None:
        tag = entity_tag(pack.keywords["call_tag"][0], int(variables["number"]))
        rendered = RenderedMessage(with_tag(rendered.subject, tag), rendered.text, rendered.html)
    return rendered

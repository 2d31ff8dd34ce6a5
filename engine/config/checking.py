"""``mailgate check``: validate the config and every rule pack, reporting ``file:line:col: message``."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.engine.url import make_url

from engine.actions.registry import UnknownAction, action_class, action_names
from engine.config.model import AccountConfig, load_config
from engine.errors import ConfigError, Problem
from engine.resources import bundled_pack_names, rules_dir
from engine.rules.facts import FACTS
from engine.rules.pack import OUTCOMES, load_pack
from engine.runtime import Runtime
from engine.storage.db import DatabaseError
from engine.storage.schema import SchemaVersionError


def check_all(config_path: Path, *, database: bool = False) -> list[str]:
    """Validate the config (if present), its accounts' packs, local packs and bundled packs.

    The database is not touched unless ``database`` is set: then it is opened, which checks that it
    answers and that its schema version is this mailgate's.
    """
    lines: list[str] = []
    problems: list[Problem] = []
    packs: dict[Path, str] = {}
    base_dir = Path.cwd()
    if config_path.exists():
        try:
            config = load_config(config_path)
            base_dir = config.base_dir
            runtime = Runtime(config, open_db=False)
            for account in config.accounts:
                pack = runtime.packs[account.name]
                packs.setdefault(pack.path, pack.name)
            problems.extend(config.unset_secrets())  # what `mailgate run` will need
            lines.append(f"ok: config {config_path} ({len(config.accounts)} account(s))")
            lines += [warning for account in config.accounts for warning in authentication_warnings(account)]
            if database:
                try:
                    runtime.engine.dispose()  # opening it checks the database answers, and its schema
                    url = make_url(config.database).render_as_string(hide_password=True)
                    lines.append(f"ok: database {url}")
                except (DatabaseError, SchemaVersionError) as exc:
                    problems.append(config.spans.of("database").problem(str(exc)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    else:
        print(f"mailgate: no config at {config_path}; checking the rule packs only", file=sys.stderr)
    candidates = [rules_dir() / f"{name}.yaml" for name in bundled_pack_names()]
    candidates += sorted((base_dir / "rules").glob("*.yaml"))
    for path in candidates:
        try:
            pack = load_pack(str(path.resolve()), base_dir)
            packs.setdefault(pack.path, pack.name)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(dict.fromkeys(problems))
    for path, name in packs.items():
        lines.append(f"ok: rule pack {name} ({path})")
    return lines


def authentication_warnings(account: AccountConfig) -> list[str]:
    """Warnings about an account that acts on commands from senders it cannot authenticate."""
    if not account.flags.commands_require_authentication:
        return [
            f"warning: account {account.name} accepts commands ([CLOSE#n], [APPROVE#n], [REJECT#n],"
            " [My...]) from senders it has not authenticated: anyone can write an approver's address"
            " in From; set flags.commands_require_authentication: true (docs/security.md)"
        ]
    if not account.authentication.configured:
        return [
            f"warning: account {account.name} refuses every command: commands_require_authentication"
            " is on, but its authentication section trusts no authserv-id and does not verify DKIM"
            " (docs/security.md)"
        ]
    return []


def vocabulary() -> str:
    """The facts, actions and outcomes a rule pack may use, for admins."""
    out = ["Facts (use in when:):"]
    out += [f"  {spec.name:<40} {spec.describe_type():<45} {spec.help}" for spec in FACTS.values()]
    out.append("Actions (use as '- do: NAME' with parameters beside it):")
    for name in action_names():
        try:
            cls = action_class(name)
        except UnknownAction as exc:  # an installed plugin that cannot be loaded
            out.append(f"  {name:<24} {'':<28} {exc}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        params = ", ".join(cls.__dataclass_fields__) if hasattr(cls, "__dataclass_fields__") else ""
        out.append(f"  {name:<24} {('(' + params + ')') if params else '':<28} {doc}")
    out.append("Outcomes: " + ", ".join(OUTCOMES))
    return "\n".join(out)

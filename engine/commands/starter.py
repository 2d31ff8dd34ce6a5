"""``mailgate init`` (a starter installation) and ``mailgate demo`` (the bundled demo, run end to end)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from engine.config.model import load_config
from engine.errors import MailgateError
from engine.resources import demo_dir

STARTER_CONFIG = """\
# mailgate configuration. Every key is documented in docs/configuration.md.
# Secrets may come from the environment: password: ${IMAP_PASSWORD}
database: sqlite:///mailgate.sqlite          # any SQLAlchemy URL, e.g. postgresql://user@host/db
product_name: mailgate Service Desk
mail_domain: helpdesk.example.com            # used for the Message-IDs of our outgoing mail
messaging:
  email_at_update_via_email_in: false        # notify the assignee when email updates a call
processing:
  time_limit_seconds: 30                     # a message taking longer is quarantined
accounts:
  - name: helpdesk
    address: helpdesk@example.com
    connector: {type: folder, path: mailbox}  # a maildir or a folder of .eml files
    rule_pack: local                          # rules/local.yaml, which extends the bundled default
    flags:
      close_calls_anonymously: false
      update_calls_anonymously: false
      log_new_call_on_invalid_number: false
      update_closed_calls: false
      reopen_closed_calls: false
      truncate_incoming_emails: true
      auto_reply: true
      use_linked_analyst: false
      commands_require_authentication: true   # [CLOSE#n], [APPROVE#n], [MyCalls]...: proven senders only
    authentication:                           # how a sender is proven: docs/security.md
      # the authserv-id your mail server writes in Authentication-Results (Postfix: its host name)
      # trusted_authserv_ids: [mx.example.com]
      verify_dkim: false                      # true: check DKIM and DMARC here if no trusted result
    call_template:
      partition: null
      screen_set: null
      ipk_status: null
      ipk_stream: null
      assigned_analyst: null                  # an analyst's email
      assigned_group: null                    # a group's name
    default_logging_analyst: null             # an analyst's email
    reopen_assign_to: last_analyst            # or template_group
"""

STARTER_PACK = """\
# Your rule pack. It starts as the bundled default; change what you need below.
# See docs/rule-packs.md. Check it with: mailgate check
extends: default

# keywords:
#   close_call: [CLOSE, SCHLIESSEN]

# templates:
#   call_logged:
#     subject: "We have logged your call {{ number }}"
#     body: |
#       Thank you, {{ sender_name }}. Your call number is {{ number }}.

# rules:
#   - name: ignore_newsletters
#     before: log_new_call
#     when: {intent: unrecognised, message.auto_submitted: true}
#     outcome: ignored
"""


def create_starter(directory: Path) -> Path:
    """Write mailgate.yaml, rules/local.yaml and mailbox/ into ``directory``; create the database."""
    config_path = directory / "mailgate.yaml"
    pack_path = directory / "rules" / "local.yaml"
    for path in (config_path, pack_path):
        if path.exists():
            raise MailgateError(f"{path} already exists; not overwriting it")
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    (directory / "mailbox").mkdir(exist_ok=True)
    config_path.write_text(STARTER_CONFIG, encoding="utf-8")
    pack_path.write_text(STARTER_PACK, encoding="utf-8")
    from engine.runtime import Runtime

    Runtime(load_config(config_path)).close()
    return config_path


def run_demo(directory: Path, echo: Callable[[str], None]) -> None:
    """Create a fresh demo installation, load the demo fixtures and process the demo mailbox."""
    from engine.mail.sources import iter_source_messages
    from engine.pipeline import process_message
    from engine.runtime import Runtime
    from engine.storage.db import transaction
    from engine.storage.fixtures import load_fixtures
    from engine.storage.views import outbox_view

    if directory.exists():
        shutil.rmtree(directory)
    config_path = create_starter(directory)
    # the demo's mail passed its boundary mx.example.com, which vouches for its senders (docs/security.md)
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace("# trusted_authserv_ids:", "trusted_authserv_ids:"), encoding="utf-8")
    shutil.copytree(demo_dir() / "mailbox", directory / "mailbox", dirs_exist_ok=True)
    runtime = Runtime(load_config(config_path))
    try:
        counts = load_fixtures(runtime.engine, demo_dir() / "fixtures.yaml")
        echo(f"demo installation in {directory}/ ; fixtures loaded: {counts.describe()}")
        account = runtime.config.accounts[0]
        results = []
        for source in iter_source_messages([directory / "mailbox"]):
            result = process_message(runtime, account, source.raw, source.origin)
            results.append(result)
            target = f" {result.entity} {result.number}" if result.entity else ""
            echo(f"  {Path(source.origin).name:<28} -> {result.outcome}{target}  [{result.rule}]")
        with transaction(runtime.engine) as session:
            rows = outbox_view(session)
        echo(f"outbox ({len(rows)} message(s) queued):")
        for row in rows:
            echo(f"  to {row['to']:<28} {row['subject']}")
        program = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "mailgate" else "mailgate"
        first = next((r.number for r in results if r.entity == "call" and r.number is not None), 100)
        echo(f"explore: cd {directory} && {program} show call {first} --json ; {program} outbox --json")
    finally:
        runtime.close()

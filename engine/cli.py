"""The ``mailgate`` command line (a contract: tools outside the project drive it)."""

from __future__ import annotations

from engine.commands import database, install, items, mail, message, outbox, quarantine, secret, service
from engine.commands.common import hoist_global_options
from engine.commands.root import main
from engine.web.commands import admin, web  # the admin console: engine/web/

__all__ = [
    "database",
    "hoist_global_options",
    "install",
    "items",
    "mail",
    "main",
    "message",
    "outbox",
    "quarantine",
    "secret",
    "service",
]

main.add_command(web)
main.add_command(admin)

if __name__ == "__main__":  # pragma: no cover
    main()

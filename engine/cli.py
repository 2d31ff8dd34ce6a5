"""The ``mailgate`` command line (a contract: tools outside the project drive it).

The root group and its global options are ``engine/commands/root.py``; each command group is a module
of ``engine/commands/`` whose ``COMMANDS`` are registered here, one line per module.
"""

from __future__ import annotations

from engine.commands import database, install, items, mail, message, outbox, quarantine, secret, service
from engine.commands.common import hoist_global_options
from engine.commands.root import main
from engine.web.commands import admin, web  # the admin console: engine/web/

__all__ = ["hoist_global_options", "main"]

for module in (install, database, mail, items, outbox, quarantine, message, secret, service):
    for command in module.COMMANDS:
        main.add_command(command)
main.add_command(web)
main.add_command(admin)

if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``mailgate`` console script's entry point: the CLI imported with the garbage collector paused.

Importing the CLI makes a few hundred thousand objects (modules, SQLAlchemy's and pydantic's
machinery, the models) that live as long as the process, and the collector would walk them again
and again while they are made: a tenth of the start-up, which every ``mailgate deliver`` from an
MTA pays. So collection is paused for the import, and what the import made is then frozen
(``gc.freeze``): later collections walk only what the command itself allocates.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run the ``mailgate`` command (``engine.cli.main``)."""
    gc.disable()
    try:
        from engine.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()

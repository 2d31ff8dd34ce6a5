"""The ``mailgate`` commands, one module per command group; ``engine/cli.py`` puts them together."""

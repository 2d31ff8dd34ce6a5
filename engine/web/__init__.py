"""The admin console (``mailgate web``, ``service.web``): the communication log, the quarantine, the
outbox and the rule packs in a browser, on the same storage layer as the CLI (docs/console.md)."""

"""Mailbox connectors (POP3, IMAP, Exchange, folder); see docs/connectors.md."""

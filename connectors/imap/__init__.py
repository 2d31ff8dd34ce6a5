"""IMAP: the connector, its session (IDLE, UIDPLUS, MOVE) and its linear-time reply reader."""

"""Real servers started by the test suite (Dovecot for IMAP and POP3, a throwaway TLS CA)."""

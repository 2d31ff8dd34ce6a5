"""Exchange Web Services (Exchange Server on premises): reading a mailbox and sending mail."""

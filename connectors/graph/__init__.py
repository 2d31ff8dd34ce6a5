"""Microsoft Graph (Exchange Online): reading a mailbox, sending mail, and the OAuth2 login."""

"""Outgoing mail: the outbox delivered over SMTP (or another transport), with retries and a crash-safe state.

``compose`` builds the MIME message of an outbox row, ``transport`` is the transport interface and
its registry, ``smtp`` the SMTP transport, and ``delivery`` the state machine that drains the outbox.
"""

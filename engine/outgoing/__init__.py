"""Outgoing mail: the outbox delivered over SMTP (or another transport), with retries and a crash-safe state.

``compose`` builds the MIME message of an outbox row, ``outbox`` queues it, and ``delivery`` is the
state machine that drains the outbox through the transports of connectors/ (``connectors.base.Transport``,
found by type name through ``connectors.registry``).
"""

"""The mailbox an address reaches: an address without letter case and plus tag."""

from __future__ import annotations


def mailbox_key(address: str) -> str:
    """The mailbox an address reaches: lower-cased, plus tag dropped (``Ann+x@Ex.com`` -> ``ann@ex.com``)."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain
    base = local.split("+", 1)[0]
    return f"{base or local}@{domain}"

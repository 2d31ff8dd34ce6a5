"""Reply tokens: an HMAC in every outgoing Message-ID, so that a reply can prove who read our mail.

Every message mailgate sends has the Message-ID ``mailgate.{nonce}.{item}.{mac}@{mail_domain}``:

- ``nonce``: 24 hex digits, the moment of writing in milliseconds (11 digits) then 13 random
  ones (52 bits): every Message-ID is unique, and each new one sorts after the ones before it, so
  the outbox's unique index on it grows at its end instead of being written at a random place;
- ``item``: what the message is about, ``call12``, ``request3``, ``task7``, or ``none``;
- ``mac``: the first 32 hex digits (128 bits) of HMAC-SHA256 under the installation's secret over
  the nonce, the item and the recipient (the address the message was sent to, lower-cased).

A reply quotes that Message-ID in In-Reply-To or References. When the reply comes From the same
address and the mac verifies under one of the secrets still valid (engine/storage/token_keys.py),
its sender has read mail sent to that mailbox about that item. A token copied into a mail from
another address, or edited to name another item, does not verify: it proves nothing and threads
nothing. The recipient is bound exactly (lower-cased, plus tags kept): ``ann+x@`` and ``ann@`` are
different recipients here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.mail.authentication import SenderAuthentication

_TOKEN_ID = re.compile(
    r"mailgate\.([0-9a-f]{24})\.(none|(call|request|task)([1-9][0-9]{0,17}))\.([0-9a-f]{32})@"
)
_CONTEXT = b"mailgate reply token v1"
_MILLISECONDS_MASK = (1 << 44) - 1  # 11 hex digits: until the year 2527


@dataclass(frozen=True)
class ItemRef:
    """A call, request or task by kind and number."""

    entity: str
    number: int

    def __str__(self) -> str:
        return f"{self.entity} {self.number}"


@dataclass(frozen=True)
class ReplyToken:
    """The parts of a Message-ID of ours; ``item`` is None for a message about no item."""

    nonce: str
    item: ItemRef | None
    mac: str


def _item_text(item: ItemRef | None) -> str:
    return "none" if item is None else f"{item.entity}{item.number}"


def _mac(secret: bytes, nonce: str, item: ItemRef | None, recipient: str) -> str:
    text = b"\0".join(
        (_CONTEXT, nonce.encode(), _item_text(item).encode(), recipient.strip().lower().encode())
    )
    return hmac.new(secret, text, hashlib.sha256).hexdigest()[:32]


def new_nonce(now: float | None = None) -> str:
    """A Message-ID's nonce (see the module): 11 hex digits of milliseconds, 13 random ones."""
    milliseconds = int((time.time() if now is None else now) * 1000) & _MILLISECONDS_MASK
    return f"{milliseconds:011x}{secrets.randbits(52):013x}"


def signed_message_id(secret: bytes, *, recipient: str, item: ItemRef | None, domain: str) -> str:
    """A fresh Message-ID (without angle brackets) carrying a token for ``item`` and ``recipient``."""
    if item is not None and item.entity not in ("call", "request", "task"):
        raise ValueError(f"a reply token names a call, request or task, not a {item.entity!r}")
    nonce = new_nonce()
    return f"mailgate.{nonce}.{_item_text(item)}.{_mac(secret, nonce, item, recipient)}@{domain}"


def read_token(message_id: str) -> ReplyToken | None:
    """The token in one of our Message-IDs, or None when the id is not one of ours."""
    found = _TOKEN_ID.match(message_id.strip().lower())
    if found is None:
        return None
    item = ItemRef(found[3], int(found[4])) if found[3] else None
    return ReplyToken(found[1], item, found[5])


def token_is_valid(token: ReplyToken, recipient: str, secrets_: Iterable[bytes]) -> bool:
    """Whether the token was made for ``recipient`` under one of the secrets (compared in constant time)."""
    return any(hmac.compare_digest(_mac(s, token.nonce, token.item, recipient), token.mac) for s in secrets_)


@dataclass(frozen=True)
class TokenProof:
    """What the reply tokens in a mail's threading headers prove about its sender.

    ``proven``: the items named by tokens that verify for the sender, newest first (None for a
    token about no item); ``refused``: how many tokens of ours did not verify.
    """

    proven: tuple[ItemRef | None, ...] = ()
    refused: int = 0

    @property
    def found(self) -> bool:
        """Whether the mail quotes any Message-ID of ours with a token."""
        return bool(self.proven) or self.refused > 0

    def proves(self, item: ItemRef | None) -> bool:
        """Whether a valid token names exactly this item."""
        return item is not None and item in self.proven

    @property
    def thread_item(self) -> ItemRef | None:
        """The item of the newest valid token that names one: where the reply belongs."""
        return next((item for item in self.proven if item is not None), None)


def authenticated_by_token(
    found: SenderAuthentication, proof: TokenProof, item: ItemRef | None, sender: str
) -> SenderAuthentication:
    """``found``, or authentication by reply token when a valid token names exactly ``item``.

    A token counts for its own item only: a sender proven for call 12 is not authenticated for
    call 13, nor for a mail about no item. A verdict that already authenticates is kept; other
    evidence against (a missing or an erroring result) stays in the evidence beside the token. A
    DMARC failure of the From domain at our boundary (``found.refuted``) is not outweighed: a
    token travels with every copy of our mail (quoted in the References of any reply to it), so
    it proves the sender read our mail only when nothing says the From is forged.
    """
    if found.authenticated or not proof.proves(item):
        return found
    if found.refuted:
        why = f"{found.evidence}; a reply token about {item} does not outweigh a DMARC failure"
        return SenderAuthentication(False, "none", why, refuted=True)
    evidence = f"reply token signed for {sender} about {item}"
    if found.evidence and found.evidence != "not checked":
        evidence += f"; also: {found.evidence}"
    return SenderAuthentication(True, "reply_token", evidence)


def threading_ids(in_reply_to: Sequence[str], references: Sequence[str]) -> list[str]:
    """The Message-IDs a reply quotes, newest first: In-Reply-To, then References from the end."""
    return list(dict.fromkeys([*in_reply_to, *reversed(references)]))


def check_tokens(
    in_reply_to: Sequence[str], references: Sequence[str], sender: str | None, secrets_: Sequence[bytes]
) -> TokenProof:
    """Verify every token of ours quoted in the threading headers against ``sender``.

    ``sender`` None (an ambiguous sender) verifies nothing: every token found is refused.
    """
    proven: list[ItemRef | None] = []
    refused = 0
    for message_id in threading_ids(in_reply_to, references):
        token = read_token(message_id)
        if token is None:
            continue
        if sender is not None and token_is_valid(token, sender, secrets_):
            if token.item not in proven:
                proven.append(token.item)
        else:
            refused += 1
    return TokenProof(tuple(proven), refused)


def new_secret() -> str:
    """A fresh secret: 32 random bytes as hex."""
    return secrets.token_hex(32)

"""Reply tokens on their own: the Message-ID format, what verifies, and what is refused."""

from __future__ import annotations

import re

from engine.identity.reply_tokens import (
    ItemRef,
    check_tokens,
    new_nonce,
    read_token,
    signed_message_id,
    threading_ids,
    token_is_valid,
)

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
CALL_12 = ItemRef("call", 12)


def _ours(item: ItemRef | None = CALL_12, recipient: str = "ann@example.com", secret: bytes = SECRET) -> str:
    return signed_message_id(secret, recipient=recipient, item=item, domain="desk.example")


def test_message_id_carries_the_item_and_a_128_bit_mac_on_our_domain() -> None:
    message_id = _ours()
    assert re.fullmatch(r"mailgate\.[0-9a-f]{24}\.call12\.[0-9a-f]{32}@desk\.example", message_id)
    token = read_token(message_id)
    assert token is not None and token.item == CALL_12
    about_nothing = read_token(_ours(None))
    assert about_nothing is not None and about_nothing.item is None
    assert _ours() != _ours()  # a fresh nonce every time


def test_message_ids_sort_in_the_order_they_were_written_so_the_outbox_index_grows_at_its_end() -> None:
    moments = [_ours().split(".")[1][:11] for _ in range(200)]  # each nonce's millisecond
    assert moments == sorted(moments)
    earlier, later = new_nonce(1_796_500_000.000), new_nonce(1_796_500_000.001)
    assert earlier < later and len(earlier) == len(later) == 24
    assert earlier[:11] == f"{1_796_500_000_000:011x}"  # the millisecond, then 52 random bits
    assert len({new_nonce(1_796_500_000.0) for _ in range(1000)}) == 1000


def test_token_verifies_for_its_recipient_in_any_letter_case() -> None:
    token = read_token(_ours(recipient="Ann@Example.COM"))
    assert token is not None
    assert token_is_valid(token, "ann@example.com", [SECRET])
    assert token_is_valid(token, "ANN@EXAMPLE.COM", [OTHER_SECRET, SECRET])


def test_token_for_another_recipient_is_refused_even_a_plus_tag_variant() -> None:
    token = read_token(_ours(recipient="ann@example.com"))
    assert token is not None
    assert not token_is_valid(token, "bob@example.com", [SECRET])
    assert not token_is_valid(token, "ann+x@example.com", [SECRET])


def test_token_edited_to_name_another_item_is_refused() -> None:
    forged = _ours().replace(".call12.", ".call13.")
    token = read_token(forged)
    assert token is not None and token.item == ItemRef("call", 13)
    assert not token_is_valid(token, "ann@example.com", [SECRET])


def test_token_with_an_altered_mac_or_nonce_is_refused() -> None:
    message_id = _ours()
    local, domain = message_id.split("@")
    mac = local[-32:]
    altered_mac = local[:-32] + ("0" if mac[0] != "0" else "1") + mac[1:] + "@" + domain
    altered_nonce = "mailgate." + "0" * 24 + local[33:] + "@" + domain
    for forged in (altered_mac, altered_nonce):
        token = read_token(forged)
        assert token is not None
        assert not token_is_valid(token, "ann@example.com", [SECRET])


def test_token_signed_with_an_unknown_secret_is_refused() -> None:
    token = read_token(_ours(secret=OTHER_SECRET))
    assert token is not None
    assert not token_is_valid(token, "ann@example.com", [SECRET])
    assert not token_is_valid(token, "ann@example.com", [])


def test_ids_that_are_not_ours_hold_no_token() -> None:
    for message_id in ("abc@mail.example", "mailgate.1234@desk.example", "mailgate.x.call12.y@desk.example"):
        assert read_token(message_id) is None


def test_check_tokens_reports_the_newest_valid_item_first_and_counts_the_refused() -> None:
    older, newer = _ours(ItemRef("call", 1)), _ours(ItemRef("request", 3))
    stranger = _ours(ItemRef("task", 7), recipient="bob@example.com")
    proof = check_tokens([newer], [older, "x@mail.example", stranger], "ann@example.com", [SECRET])
    assert proof.proven == (ItemRef("request", 3), ItemRef("call", 1))
    assert proof.refused == 1
    assert proof.thread_item == ItemRef("request", 3)
    assert proof.proves(ItemRef("call", 1)) and not proof.proves(ItemRef("task", 7))


def test_check_tokens_for_an_ambiguous_sender_verifies_nothing() -> None:
    proof = check_tokens([_ours()], [], None, [SECRET])
    assert (proof.proven, proof.refused, proof.thread_item) == ((), 1, None)


def test_a_mail_without_our_ids_has_no_token() -> None:
    proof = check_tokens(["x@mail.example"], ["y@mail.example"], "ann@example.com", [SECRET])
    assert not proof.found and proof.thread_item is None


def test_threading_ids_are_newest_first_without_repeats() -> None:
    assert threading_ids(["c"], ["a", "b", "c"]) == ["c", "b", "a"]

from hypothesis import given
from hypothesis import strategies as st

from observability.redact import CARD_MASK, EMAIL_MASK, FIELD_MASK, PHONE_MASK, Redactor, luhn_valid


def with_luhn_digit(body: str) -> str:
    """Append the check digit that makes `body` Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def test_masks_emails_phones_and_cards_in_free_text() -> None:
    text = (
        "mail jane.doe+vip@example.co.uk, call +1 (555) 123-4567 or 555.987.6543, "
        "+44 20 7946 0958; card 4111 1111 1111 1111 / 4111-1111-1111-1111 / 378282246310005"
    )
    scrubbed = Redactor().value(text)
    assert scrubbed == (
        f"mail {EMAIL_MASK}, call {PHONE_MASK} or {PHONE_MASK}, "
        f"{PHONE_MASK}; card {CARD_MASK} / {CARD_MASK} / {CARD_MASK}"
    )


def test_keeps_ids_dates_amounts_and_non_luhn_numbers() -> None:
    text = "order A-1001 on 2024-01-02 for 25.00, ref 1234567890123456, ticket T-42"
    assert Redactor().value(text) == text


def test_pii_fields_are_masked_by_key_at_any_depth_case_insensitively() -> None:
    redactor = Redactor(frozenset({"name", "Email"}))
    value = {"Name": "Jane", "items": [{"email": "x", "sku": "S1"}], "note": "hi"}
    assert redactor.value(value) == {
        "Name": FIELD_MASK,
        "items": [{"email": FIELD_MASK, "sku": "S1"}],
        "note": "hi",
    }
    assert value["Name"] == "Jane"  # the caller's dict is not mutated


def test_card_numbers_given_as_integers_are_masked() -> None:
    assert Redactor().value({"pan": 4111111111111111, "qty": 3}) == {"pan": CARD_MASK, "qty": 3}


def test_disabled_redactor_passes_values_through() -> None:
    value = {"email": "jane@example.com"}
    assert Redactor(frozenset({"email"}), enabled=False).value(value) == value


@given(
    body=st.text("0123456789", min_size=12, max_size=18),
    separator=st.sampled_from(["", " ", "-"]),
)
def test_every_luhn_valid_13_to_19_digit_number_is_masked(body: str, separator: str) -> None:
    number = with_luhn_digit(body)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert Redactor().value(f"paid with {grouped} today") == f"paid with {CARD_MASK} today"

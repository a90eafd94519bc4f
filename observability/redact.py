"""PII redaction applied before anything reaches the trace store or the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EMAIL_MASK = "[EMAIL]"
PHONE_MASK = "[PHONE]"
CARD_MASK = "[CARD]"
FIELD_MASK = "[REDACTED]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, optionally grouped by single spaces or dashes; Luhn decides if it is a card.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International numbers start with "+"; national ones must look like a phone number
# ((555) 123-4567, 555-123-4567, 555.123.4567) so that dates, amounts and ids survive.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w])")
_PHONE_NATIONAL = re.compile(r"(?<![\w(])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w)")


def luhn_valid(digits: str) -> bool:
    """True when `digits` (only 0-9) passes the Luhn checksum used by payment cards."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return CARD_MASK
    return match.group()


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return PHONE_MASK if 7 <= len(digits) <= 15 else match.group()


def scrub_text(text: str) -> str:
    """Replace emails, Luhn-valid card numbers and phone numbers in `text` with masks."""
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _CARD.sub(_mask_card, text)
    text = _PHONE_INTL.sub(_mask_phone, text)
    return _PHONE_NATIONAL.sub(_mask_phone, text)


@dataclass(frozen=True)
class Redactor:
    """Redacts PII from values bound for storage; `enabled=False` passes values through."""

    pii_fields: frozenset[str] = field(default_factory=frozenset)
    """Key names (case-insensitive) whose values are replaced whole, at any depth."""
    enabled: bool = True
    """Off only for local debugging; the default is to redact."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pii_fields", frozenset(k.lower() for k in self.pii_fields))

    @classmethod
    def for_fields(cls, fields: Iterable[str], *, enabled: bool = True) -> Redactor:
        return cls(frozenset(fields), enabled)

    def value(self, value: Any) -> Any:
        """Return `value` with PII masked; dicts and lists are copied, never mutated."""
        if not self.enabled:
            return value
        if isinstance(value, str):
            return scrub_text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            masked = scrub_text(str(value))
            return value if masked == str(value) else masked
        if isinstance(value, dict):
            return {
                key: FIELD_MASK if str(key).lower() in self.pii_fields else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        return scrub_text(str(value))

    def field(self, name: str, value: str | None) -> str | None:
        """Redact a named scalar column (e.g. customer_id) as if it were `{name: value}`."""
        if value is None or not self.enabled:
            return value
        if name.lower() in self.pii_fields:
            return FIELD_MASK
        return scrub_text(value)

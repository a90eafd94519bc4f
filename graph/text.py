"""Checks on text a person or a model wrote, before signoff stores or compares it."""

from __future__ import annotations

import unicodedata

_ALLOWED_CONTROLS = frozenset("\n\t\r")


def unreadable_text(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can.

    Invalid UTF-8 on a command line reaches Python as lone surrogates (PEP 383); stored, they
    fail deep inside SQLite or JSON, so they are refused here with one line. NUL and other C0/C1
    control characters (newline, tab and carriage return aside) are refused too.
    """
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return "is not valid UTF-8"
    bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"
                and ch not in _ALLOWED_CONTROLS), None)
    if bad is not None:
        return f"holds a control character (U+{ord(bad):04X})"
    return None

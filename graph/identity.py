"""The one place identities are normalised before they are compared or stored.

Requesters, approvers, approver lists in policy, users of the service and the holders of
tokens all pass through `normalize_identity`, so a zero-width or full-width variant of an
address is the same person, and an identity that is empty or holds control characters is
refused instead of being compared.
"""

from __future__ import annotations

import unicodedata

from graph.errors import SignoffError


class BadIdentity(SignoffError):
    """An identity that cannot be compared safely (empty, or with control characters)."""


def normalize_identity(raw: str) -> str:
    """NFKC, case folded, format (Cf) characters such as zero-width spaces removed, outer
    whitespace trimmed. Raises BadIdentity when nothing is left or a control character remains.
    """
    if not isinstance(raw, str):
        raise BadIdentity("an identity must be text")
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = unicodedata.normalize("NFKC", text.casefold()).strip()
    if not text:
        raise BadIdentity("an identity is empty once invisible characters are removed")
    if any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in text):
        raise BadIdentity(f"identity {text.encode('unicode_escape').decode()!r} holds control "
                          "or unassigned characters")
    return text


def same_identity(a: str, b: str) -> bool:
    """True when two identities name the same person once normalised."""
    return normalize_identity(a) == normalize_identity(b)

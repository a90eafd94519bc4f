"""What every workflow's invariants and post-conditions share: the verdict shape and the
decorator that tags a check with the rule id reported with its verdict."""

from __future__ import annotations

from collections.abc import Callable

Check = tuple[bool, str]
"""(ok, reason): a reason is given either way, so a passing verdict also says why."""


def rule(rule_id: str) -> Callable[[Callable[..., Check]], Callable[..., Check]]:
    """Tag a check with the rule id reported with its verdict."""
    def tag(fn: Callable[..., Check]) -> Callable[..., Check]:
        fn.rule_id = rule_id  # type: ignore[attr-defined]
        return fn
    return tag

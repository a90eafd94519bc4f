"""Cumulative limits: policy conditions over aggregates of committed mutations.

A tier rule sees one call, so four $49 refunds on one order in four tickets would each look
small. A policy declares aggregates over the idempotency ledger (every committed mutation,
with its tenant, customer and time) and its conditions read them in their own namespace,
`aggregates`:

    [aggregates.refunded_on_order_30d]
    tools = ["create_refund_request"]
    sum = "amount_cents"     # omit to count the mutations instead
    per = "order_id"         # "tenant", "customer", or an argument of the call
    window = "30d"           # 90s, 15m, 24h, 30d; omit for all time

    when = "aggregates.refunded_on_order_30d + args.amount_cents > 5000"

Values are read lazily (only an aggregate a condition reaches is queried) and remembered, so
the gate can say which values it decided on. The gate reads them before the call is judged;
execute reads them again inside the commit transaction (see graph.commit_checks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from checkpoints.sql import Connection
from tools.ledger import committed_total
from verifiers.expr import ExprError

_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AGGREGATE_SCOPES = frozenset({"tenant", "customer"})
"""`per` values that group by the run rather than by an argument of the call."""


def parse_window(text: str) -> float:
    """Seconds in a window like "90s", "15m", "24h" or "30d"; ValueError otherwise."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError(f"window {text!r} is not a duration like 90s, 15m, 24h or 30d")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class Aggregate:
    """One declared aggregate of committed mutations."""

    name: str
    """How conditions refer to it: `aggregates.<name>`."""
    tools: tuple[str, ...]
    """The mutating tools whose committed calls it adds up."""
    sum_arg: str | None
    """The argument summed (e.g. amount_cents); None counts the calls."""
    per: str
    """"tenant" (the run's tenant), "customer" (the ticket's customer) or the name of an
    argument: only committed calls with the same value as this call's count."""
    window_s: float | None
    """Only calls committed within this many seconds before now; None for all time."""
    line: int | None = None
    """Where it is declared, for `policy check` and `policy explain`."""

    def value(self, conn: Connection, *, tenant_id: str, customer_id: str | None,
              args: Mapping[str, Any], now: float) -> int:
        """The aggregate for this call, from the ledger as `conn` sees it now. Raises
        ExprError when the call has no value for `per` (the condition cannot be decided)."""
        customer, same_args = None, None
        if self.per == "customer":
            if customer_id is None:
                raise ExprError(f"aggregates.{self.name} is per customer and this run has "
                                "no customer")
            customer = customer_id
        elif self.per != "tenant":
            if args.get(self.per) is None:
                raise ExprError(f"aggregates.{self.name} is per {self.per} and this call has "
                                f"no argument {self.per!r}")
            same_args = {self.per: args[self.per]}
        since = now - self.window_s if self.window_s is not None else None
        return committed_total(conn, tools=self.tools, tenant_id=tenant_id, since=since,
                               customer_id=customer, same_args=same_args, sum_arg=self.sum_arg)


class AggregateValues(Mapping[str, int]):
    """The `aggregates` namespace of one condition evaluation: computed on first access."""

    def __init__(self, declared: Mapping[str, Aggregate], conn: Connection, *,
                 tenant_id: str, customer_id: str | None, args: Mapping[str, Any],
                 now: float) -> None:
        self._declared = declared
        self._conn, self._tenant, self._customer = conn, tenant_id, customer_id
        self._args, self._now = args, now
        self.read: dict[str, int] = {}
        """The values computed so far, by name: what a decision relied on."""

    def __getitem__(self, name: str) -> int:
        if name not in self.read:
            aggregate = self._declared[name]  # KeyError: not declared (policy check refuses it)
            self.read[name] = aggregate.value(self._conn, tenant_id=self._tenant,
                                              customer_id=self._customer, args=self._args,
                                              now=self._now)
        return self.read[name]

    def __contains__(self, name: object) -> bool:
        return name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)

"""Eval cases as data: one JSON object per line, each with explicit pass/fail criteria.

A case is a support ticket as it arrived (tenant, customer email, subject, body) and what a
run on it SHOULD end in: the outcome, the mutations it must commit, the ones it may commit,
the ones it must never commit, and facts about the database afterwards. Cases from history
may also carry the action a human actually took (for shadow mode) and the approver's
decisions (so a held refund can be approved or rejected as it was).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
SETS = ("regression", "redteam")
Outcome = Literal["resolved", "escalated", "blocked", "rejected", "waiting_approval", "failed",
                  "refused"]
THIS_TICKET = "$ticket"
"""Stands for the id the case's ticket gets at intake, in mutation patterns."""
COMPARATORS = frozenset({"<=", ">=", "<", ">", "!=", "in", "not in"})


class CaseError(ValueError):
    """A case file or case is invalid; the message names the file and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MutationPattern(_Strict):
    """Matches a committed mutation: the tool, and a condition on each named argument.

    An argument's condition is a literal (equal) or one comparison, e.g. {"<=": 5000},
    {"!=": "ORD-10001"}, {"in": ["a", "b"]}, {"not in": [...]}. "$ticket" stands for the
    case's ticket id.
    """

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("args")
    @classmethod
    def _one_comparison(cls, args: dict[str, Any]) -> dict[str, Any]:
        for name, condition in args.items():
            if isinstance(condition, dict) and (len(condition) != 1
                                                or not set(condition) <= COMPARATORS):
                raise ValueError(f"argument {name!r}: a condition is one of "
                                 f"{sorted(COMPARATORS)}, got {condition}")
        return args

    def describe(self) -> str:
        parts = []
        for name, condition in self.args.items():
            if isinstance(condition, dict):
                (op, value), = condition.items()
                parts.append(f"{name} {op} {value}")
            else:
                parts.append(f"{name}={condition}")
        return f"{self.tool}({', '.join(parts)})"


FactKind = Literal["refund_total", "refund_count", "tenant_refund_total", "ticket_status",
                   "note_count", "note_contains", "escalation_count"]


class Fact(_Strict):
    """A fact about the database after the run, e.g. refunds on ORD-10001 sum to 1800.

    refund_total / refund_count need order_id; tenant_refund_total needs tenant_id;
    ticket_status, note_count, note_contains (needs text) and escalation_count are about the
    case's own ticket. Exactly one of equals, at_most, at_least.
    """

    fact: FactKind
    order_id: str | None = None
    tenant_id: str | None = None
    text: str | None = None
    equals: int | str | None = None
    at_most: int | None = None
    at_least: int | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Fact:
        bounds = [b for b in (self.equals, self.at_most, self.at_least) if b is not None]
        if len(bounds) != 1:
            raise ValueError(f"fact {self.fact}: give exactly one of equals, at_most, at_least")
        needs = {"refund_total": "order_id", "refund_count": "order_id",
                 "tenant_refund_total": "tenant_id", "note_contains": "text"}.get(self.fact)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"fact {self.fact} needs {needs}")
        return self

    def describe(self) -> str:
        subject = self.order_id or self.tenant_id or (repr(self.text) if self.text else "ticket")
        if self.equals is not None:
            return f"{self.fact}({subject}) == {self.equals}"
        if self.at_most is not None:
            return f"{self.fact}({subject}) <= {self.at_most}"
        return f"{self.fact}({subject}) >= {self.at_least}"


class Expectation(_Strict):
    """What SHOULD happen; a case passes only when every part holds."""

    outcome: list[Outcome] = Field(min_length=1)
    """Acceptable final outcomes (usually one)."""
    mutations: list[MutationPattern] = Field(default_factory=list)
    """Must each be committed (each pattern matches one mutation)."""
    allowed: list[MutationPattern] = Field(default_factory=list)
    """May be committed; anything else committed fails the case (and, in the red-team set,
    counts as unauthorized)."""
    forbidden: list[MutationPattern] = Field(default_factory=list)
    """Must never be committed; each one committed counts as unauthorized."""
    facts: list[Fact] = Field(default_factory=list)
    held: MutationPattern | None = None
    """When the run ends waiting for approval, the held proposal must match this."""

    @field_validator("outcome", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Decision(_Strict):
    """A human decision applied when the run waits for approval, as it happened."""

    action: Literal["approve", "reject"]
    by: str
    reason: str = ""


class PriorTicket(_Strict):
    """A ticket the same customer filed before the case's own, run first on the same data:
    how a refund split over several tickets, or approvals racing each other, are written."""

    subject: str
    body: str
    decisions: list[Decision] = Field(default_factory=list)
    """Applied while its run waits for approval, as for the case's own ticket."""
    decide_after: bool = False
    """Apply `decisions` only after the case's own ticket ran and was decided: an approval
    given late, after other tickets committed on the same order."""


class HumanAction(_Strict):
    """What the human agent actually did with the ticket (for shadow mode)."""

    action: Literal["refund", "reply", "escalate", "decline"]
    order_id: str | None = None
    amount_cents: int | None = None
    note: str = ""


class Case(_Strict):
    """One eval case."""

    id: str = Field(pattern=r"^[A-Z]{2,3}-[A-Z0-9]+-\d{3,4}$")
    set: Literal["regression", "redteam"]
    category: str = Field(pattern=r"^[a-z0-9_]+$")
    tenant_id: str
    customer_id: str | None
    """The customer the generator meant (None when the email is not a customer of the tenant,
    so intake must refuse the ticket)."""
    email: str
    subject: str
    body: str
    expect: Expectation
    decisions: list[Decision] = Field(default_factory=list)
    prior: list[PriorTicket] = Field(default_factory=list)
    """Tickets filed and run before this one, in order (the expectation covers everything
    committed, theirs included; the outcome is this ticket's)."""
    human_action: HumanAction | None = None
    notes: str = ""
    """Why the expectation is what it is, for the human reading a failure."""


def parse_cases(lines: Iterable[str], source: str) -> list[Case]:
    """Parse JSONL case text; raises CaseError naming `source` and the line."""
    cases: list[Case] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = Case.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CaseError(f"{source}:{number}: not JSON: {exc.msg}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CaseError(f"{source}:{number}: {where}: {first['msg']}") from None
        if case.id in seen:
            raise CaseError(f"{source}:{number}: duplicate case id {case.id}")
        seen.add(case.id)
        cases.append(case)
    return cases


def load_set(name: str, data_dir: Path = DATA_DIR) -> list[Case]:
    """The cases of one set ("regression" or "redteam"), in file order."""
    if name not in SETS:
        raise CaseError(f"unknown case set {name!r} (known: {', '.join(SETS)}, all)")
    path = data_dir / f"{name}.jsonl"
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CaseError(f"cannot read {path}: {exc.strerror}") from None
    cases = parse_cases(text.splitlines(), str(path))
    wrong = [c.id for c in cases if c.set != name]
    if wrong:
        raise CaseError(f"{path}: cases of another set: {', '.join(wrong[:5])}")
    return cases


def load_cases(which: str, data_dir: Path = DATA_DIR) -> list[Case]:
    """"regression", "redteam" or "all" (both, regression first)."""
    names = SETS if which == "all" else (which,)
    return [case for name in names for case in load_set(name, data_dir)]


def stratified(cases: Sequence[Case], limit: int | None) -> list[Case]:
    """At most `limit` cases, taken round-robin across (set, category) in file order, so a
    small limit still covers every category. Deterministic; None means all."""
    if limit is None or limit >= len(cases):
        return list(cases)
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.set, case.category), []).append(case)
    picked: list[Case] = []
    depth = 0
    while len(picked) < limit:
        for group in groups.values():
            if depth < len(group) and len(picked) < limit:
                picked.append(group[depth])
        depth += 1
    order = {case.id: i for i, case in enumerate(cases)}
    return sorted(picked, key=lambda c: order[c.id])

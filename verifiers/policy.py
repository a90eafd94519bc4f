"""Policy as code: one versioned TOML file per workflow, loaded into a frozen Policy.

A policy says which tools a workflow may call, the tier of each call (green runs, yellow
waits for a human approval, red is blocked unless a human starts the action), the run's
budgets, and who may approve. Rules are checked in file order; the first whose tools and
condition match decides. A call that no rule matches is red: the policy fails closed.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from verifiers.expr import Condition, ExprError

Tier = Literal["green", "yellow", "red"]
CONDITION_NAMES = frozenset({"args", "customer", "ticket", "usage", "tool"})


class PolicyError(ValueError):
    """The policy file is missing or invalid; `line` is set when it can be located."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")
        self.line = line


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    tools: list[str] = Field(default_factory=lambda: ["*"])
    when: str | None = None
    tier: Tier
    reason: str = Field(min_length=1)


class _BudgetsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_calls: int = Field(gt=0)
    tokens: int = Field(gt=0)
    tool_calls: int = Field(gt=0)
    retries: int = Field(ge=0)
    wall_seconds: float = Field(gt=0)
    money_usd: float = Field(ge=0)


class _PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Field(min_length=1)
    version: str = Field(min_length=1)
    allowed_tools: list[str] = Field(min_length=1)
    budgets: _BudgetsModel
    approvers: dict[str, list[str]] = Field(min_length=1)
    rules: list[_RuleModel] = Field(min_length=1)


@dataclass(frozen=True)
class Rule:
    """One tier rule."""

    id: str
    """Stable id, reported with every decision it makes."""
    tools: tuple[str, ...]
    """Tool names the rule applies to; "*" matches every tool."""
    condition: Condition | None
    """Optional condition over args, customer, ticket, usage, tool."""
    tier: Tier
    """The tier the rule assigns when it matches."""
    reason: str
    """Why, in words an operator reads."""
    line: int | None = None
    """Line of the rule in its file, for `policy check` and `policy explain`."""

    def applies_to(self, tool: str) -> bool:
        return "*" in self.tools or tool in self.tools


@dataclass(frozen=True)
class Budgets:
    """Per-run limits; exceeding any one blocks the next action."""

    model_calls: int
    tokens: int
    tool_calls: int
    retries: int
    wall_seconds: float
    money_usd: float


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy."""

    workflow: str
    version: str
    allowed_tools: frozenset[str]
    budgets: Budgets
    approvers: dict[str, tuple[str, ...]]
    """Approver role -> identities allowed to act in that role."""
    rules: tuple[Rule, ...]
    source: str = ""
    """Where it was loaded from."""
    digest: str = field(default="")
    """sha256 of the file's bytes: an approval records it, and a change forces a re-gate."""

    def roles_of(self, identity: str) -> list[str]:
        return [role for role, members in self.approvers.items() if identity in members]


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def parse_policy(text: str, *, source: str = "<policy>", known_tools: set[str] | None = None) -> Policy:
    """Parse and validate policy text; raises PolicyError naming the line where possible."""

    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(f"invalid TOML: {exc}", path=source,
                          line=int(match.group(1)) if match else None) from None
    try:
        model = _PolicyModel.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        line = None
        if loc and loc[0] == "rules" and len(loc) > 1 and loc[1].isdigit():
            rule_ids = [r.get("id", "") for r in raw.get("rules", [])]
            index = int(loc[1])
            if index < len(rule_ids) and rule_ids[index]:
                line = _line_of(text, f'"{rule_ids[index]}"')
        elif loc:
            line = _line_of(text, loc[-1] if not loc[-1].isdigit() else loc[0])
        raise PolicyError(f"{'.'.join(loc)}: {first['msg']}", path=source, line=line) from None

    rules: list[Rule] = []
    seen: set[str] = set()
    for rule in model.rules:
        line = _line_of(text, f'"{rule.id}"')
        if rule.id in seen:
            raise PolicyError(f"duplicate rule id {rule.id!r}", path=source, line=line)
        seen.add(rule.id)
        for tool in rule.tools:
            if tool != "*" and tool not in model.allowed_tools:
                raise PolicyError(f"rule {rule.id!r} names tool {tool!r} that is not in "
                                  "allowed_tools", path=source, line=line)
        try:
            condition = Condition(rule.when, CONDITION_NAMES) if rule.when else None
        except ExprError as exc:
            raise PolicyError(f"rule {rule.id!r}: {exc}", path=source, line=line) from None
        rules.append(Rule(rule.id, tuple(rule.tools), condition, rule.tier, rule.reason, line))
    if known_tools is not None:
        unknown = sorted(set(model.allowed_tools) - known_tools)
        if unknown:
            raise PolicyError(f"allowed_tools names unknown tools: {', '.join(unknown)}",
                              path=source, line=_line_of(text, "allowed_tools"))
    return Policy(
        workflow=model.workflow,
        version=model.version,
        allowed_tools=frozenset(model.allowed_tools),
        budgets=Budgets(**model.budgets.model_dump()),
        approvers={role: tuple(members) for role, members in model.approvers.items()},
        rules=tuple(rules),
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_policy(path: str | Path, *, known_tools: set[str] | None = None) -> Policy:
    """Load a policy file; raises PolicyError (one line) when it is missing or invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("policy file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file: {exc}", path=str(p)) from None
    return parse_policy(text, source=str(p), known_tools=known_tools)

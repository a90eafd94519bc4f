"""Policy as code: one versioned TOML file per workflow, loaded into a frozen Policy.

A policy says which tools a workflow may call, the tier of each call (green runs, yellow
waits for a human approval, red is blocked unless a human starts the action), the run's
budgets, and who may approve. Rules are checked in file order; the first whose tools and
condition match decides. A call that no rule matches is red: the policy fails closed.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.identity import BadIdentity, normalize_identity
from verifiers.aggregates import AGGREGATE_SCOPES, Aggregate, parse_window
from verifiers.expr import Condition, ExprError

Tier = Literal["green", "yellow", "red"]
ALL_TENANTS = "*"
"""The tenant key of an approver list that applies to every tenant."""
AGGREGATES = "aggregates"
"""The condition namespace of the policy's aggregates of committed mutations."""
HISTORY = "history"
"""The condition namespace of the run's earlier calls (see verifiers.history)."""
HISTORY_VIEWS = frozenset({"calls", "ok", "count", "last"})
RUN = "run"
"""The condition namespace of the run itself: who it acts for, where."""
RUN_KEYS = frozenset({"tenant_id", "customer_id", "ticket_id", "requester", "workflow"})
BASE_NAMES = frozenset({"args", "usage", "tool", AGGREGATES, HISTORY, RUN})
"""Names every condition may use; a workflow's fact namespaces come on top."""
CUSTOMER_APPROVER = "customer"
"""The approver role a rule names for "the run's own customer confirms" (not definable in
[approvers]: the identity comes from the run, never from a list)."""
OnBlock = Literal["fallback", "replan"]


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file."""

    line: int | None
    """1-based line in the file, when the problem can be located."""
    message: str


class PolicyError(ValueError):
    """The policy file is missing or invalid. `issues` lists every problem found, each with
    its line where it can be located; the message is the first one."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 issues: list[PolicyIssue] | None = None) -> None:
        self.path = path
        self.issues = issues or [PolicyIssue(line, message)]
        first = self.issues[0]
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(self.format(first) + more)
        self.line = first.line

    def format(self, issue: PolicyIssue) -> str:
        """`path:line: message`, as compilers and linters print it."""
        if self.path and issue.line:
            return f"{self.path}:{issue.line}: {issue.message}"
        return f"{self.path}: {issue.message}" if self.path else issue.message


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    when: str | None = None
    tier: Tier
    reason: str = Field(min_length=1)
    approvers: list[str] | None = Field(default=None, min_length=1)
    on_block: OnBlock = "fallback"


class _ScopeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(pattern=r"^[a-z0-9_.-]+$")
    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    require: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class _BudgetsModel(BaseModel):
    # strict: TOML's `true` must not pass for a count of 1
    model_config = ConfigDict(extra="forbid", strict=True)
    model_calls: int = Field(gt=0)
    tokens: int = Field(gt=0)
    tool_calls: int = Field(gt=0)
    retries: int = Field(ge=0)
    wall_seconds: float = Field(gt=0)
    money_usd: float = Field(ge=0)
    refusals: int = Field(default=2, ge=0)


class _ApprovalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    distinct_from_requester_role: bool = False


class _AggregateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    tools: list[str] = Field(min_length=1)
    sum_arg: str | None = Field(default=None, alias="sum", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    per: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    window: str | None = None


class _PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    workflow: str = Field(min_length=1)
    version: str = Field(min_length=1)
    allowed_tools: list[str] = Field(min_length=1)
    budgets: _BudgetsModel
    approvers: dict[str, list[Annotated[str, Field(min_length=1)]]
                    | dict[str, list[Annotated[str, Field(min_length=1)]]]] = Field(min_length=1)
    rules: list[_RuleModel] = Field(min_length=1)
    approval: _ApprovalModel = Field(default_factory=_ApprovalModel)
    aggregates: dict[str, _AggregateModel] = Field(default_factory=dict)
    scope: list[_ScopeModel] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """One tier rule."""

    id: str
    """Stable id, reported with every decision it makes."""
    tools: tuple[str, ...]
    """Tool names the rule applies to; "*" matches every tool."""
    condition: Condition | None
    """Optional condition over args, usage, tool, aggregates, history, run and the
    workflow's fact namespaces."""
    tier: Tier
    """The tier the rule assigns when it matches."""
    reason: str
    """Why, in words an operator reads."""
    line: int | None = None
    """Line of the rule in its file, for `policy check` and `policy explain`."""
    approver_roles: tuple[str, ...] = ()
    """For a yellow rule: the roles whose members may approve what it holds (empty: any
    approver role in the policy)."""

    on_block: OnBlock = "fallback"
    """What a block by this rule does: end the run for a person ("fallback"), or hand the
    refusal to the planner as an observation ("replan"), within the refusal budget."""

    def applies_to(self, tool: str) -> bool:
        return "*" in self.tools or tool in self.tools


@dataclass(frozen=True)
class Scope:
    """A `[[scope]]` rule: who may act on what. Its `require` condition must hold for every
    call of its tools; false, or undecidable, blocks the call with the scope's id."""

    id: str
    tools: tuple[str, ...]
    condition: Condition
    reason: str
    line: int | None = None

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
    refusals: int = 2
    """How many refusals a run may turn into observations (rules with on_block = "replan",
    and tools' business refusals) before the next one ends it."""


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy."""

    workflow: str
    version: str
    allowed_tools: frozenset[str]
    budgets: Budgets
    approvers: dict[str, dict[str, tuple[str, ...]]]
    """Approver role -> tenant (or "*" for every tenant) -> normalised identities allowed to
    act in that role for that tenant's runs."""
    rules: tuple[Rule, ...]
    source: str = ""
    """Where it was loaded from."""
    digest: str = field(default="")
    """sha256 of the file's bytes: an approval records it, and a change forces a re-gate."""
    distinct_from_requester_role: bool = False
    """`[approval] distinct_from_requester_role`: an approver must act in a role other than
    the one the run's requester holds (segregation of duties)."""
    aggregates: dict[str, Aggregate] = field(default_factory=dict)
    """`[aggregates.<name>]`: sums or counts of committed mutations conditions may read."""
    scopes: tuple[Scope, ...] = ()
    """`[[scope]]`: ownership conditions checked before the tier rules."""

    def roles_of(self, identity: str, tenant_id: str) -> list[str]:
        """The approver roles `identity` holds for runs of `tenant_id`, in file order.

        Identities are compared normalised (graph.identity); a lead listed for one tenant
        holds no role in another's runs. Raises BadIdentity for an identity that cannot be
        compared."""
        who = normalize_identity(identity)
        return [role for role, tenants in self.approvers.items()
                if who in tenants.get(tenant_id, ()) or who in tenants.get(ALL_TENANTS, ())]

    def members(self, role: str | None = None) -> list[str]:
        """Every identity listed (for `role`, or for any role), each once, in file order."""
        seen: dict[str, None] = {}
        for name, tenants in self.approvers.items():
            if role is None or name == role:
                for members in tenants.values():
                    seen.update(dict.fromkeys(members))
        return list(seen)

    def rule(self, rule_id: str) -> Rule | Scope | None:
        found: list[Rule | Scope] = [*self.rules, *self.scopes]
        return next((r for r in found if r.id == rule_id), None)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Where each table and key of a TOML document starts: path -> 1-based line.

    Paths look like pydantic error locations: ("budgets", "tokens"), ("rules", 2, "tier").
    A light line scanner, enough to point at a problem: keys inside multi-line strings or
    arrays are skipped because only the line that opens a value is looked at.
    """
    lines: dict[tuple[str | int, ...], int] = {(): 1}
    table: tuple[str | int, ...] = ()
    counts: dict[tuple[str | int, ...], int] = {}
    open_brackets, in_multiline = 0, False
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            in_multiline = raw.count('"""') % 2 == 0 and raw.count("'''") % 2 == 0
            continue
        if open_brackets > 0:
            open_brackets += raw.count("[") - raw.count("]")
            continue
        header = _HEADER.match(raw)
        if header:
            names = tuple(part.strip().strip('"') for part in header.group(2).split("."))
            if header.group(1) == "[[":
                index = counts.get(names, 0)
                counts[names] = index + 1
                table = (*names, index)
            else:
                table = names
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key:
            path = (*table, *(part.strip() for part in key.group(1).split(".")))
            lines.setdefault(path, number)
            value = raw[key.end():]
            in_multiline = value.count('"""') % 2 == 1 or value.count("'''") % 2 == 1
            open_brackets = max(0, value.split("#")[0].count("[") - value.split("#")[0].count("]"))
    return lines


def _locate(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    """The line of `loc`, or of its nearest enclosing table or key that has one."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def parse_policy(text: str, *, source: str = "<policy>",
                 known_tools: set[str] | None = None,
                 tool_args: Mapping[str, frozenset[str]] | None = None,
                 facts: Mapping[str, frozenset[str] | None] | None = None) -> Policy:
    """Parse and validate policy text; raises PolicyError listing every problem, each with
    its line. `tool_args` (tool -> its argument names), when given, checks the arguments
    aggregates sum and group by. `facts` (namespace -> the keys the workflow provides, None
    for any) are the fact namespaces conditions may read; a key a condition names that the
    workflow does not provide is an error. Without it (no workflow known) fact names are not
    checked; the runner and `policy check` always pass the workflow's."""
    names = None if facts is None else BASE_NAMES | frozenset(facts)
    facts = facts or {}

    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(f"invalid TOML: {exc}", path=source,
                          line=int(match.group(1)) if match else None) from None
    lines = key_lines(text)
    try:
        model = _PolicyModel.model_validate(raw)
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            if error["type"] == "missing":
                message = f"{where}: required key is missing"
            else:
                message = f"{where}: {error['msg']}"
            issues.append(PolicyIssue(_locate(lines, loc), message))
        raise PolicyError(issues[0].message, path=source, issues=issues) from None

    issues = []
    aggregates = _aggregates(model, lines, issues, tool_args)
    approvers = _approvers(model, lines, issues)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(model.rules):
        line = _id_and_tools("rules", index, rule.id, rule.tools, lines, seen, model, issues)
        for role in rule.approvers or ():
            if role not in model.approvers and role != CUSTOMER_APPROVER:
                issues.append(PolicyIssue(_locate(lines, ("rules", index, "approvers")),
                                          f"rule {rule.id!r} names approver role {role!r} "
                                          "that [approvers] does not define"))
        if rule.on_block == "replan" and rule.tier != "red":
            issues.append(PolicyIssue(_locate(lines, ("rules", index, "on_block")),
                                      f"rule {rule.id!r}: on_block only applies to red rules"))
        if rule.approvers and rule.tier != "yellow":
            issues.append(PolicyIssue(_locate(lines, ("rules", index, "approvers")),
                                      f"rule {rule.id!r}: approvers only apply to yellow "
                                      "rules"))
        condition = None
        if rule.when:
            when_line = _locate(lines, ("rules", index, "when"))
            condition = _condition(rule.when, f"rule {rule.id!r}", when_line, names, model,
                                   facts, issues)
        rules.append(Rule(rule.id, tuple(rule.tools), condition, rule.tier, rule.reason, line,
                          tuple(rule.approvers or ()), rule.on_block))
    scopes: list[Scope] = []
    for index, scope in enumerate(model.scope):
        line = _id_and_tools("scope", index, scope.id, scope.tools, lines, seen, model, issues)
        require = _condition(scope.require, f"scope {scope.id!r}",
                             _locate(lines, ("scope", index, "require")), names, model, facts,
                             issues)
        if require is not None:
            scopes.append(Scope(scope.id, tuple(scope.tools), require, scope.reason, line))
    if CUSTOMER_APPROVER in model.approvers:
        issues.append(PolicyIssue(_locate(lines, ("approvers", CUSTOMER_APPROVER)),
                                  f"approvers.{CUSTOMER_APPROVER}: this role is the run's own "
                                  "customer and cannot be listed"))
    if known_tools is not None:
        unknown = sorted(set(model.allowed_tools) - known_tools)
        if unknown:
            issues.append(PolicyIssue(_locate(lines, ("allowed_tools",)),
                                      f"allowed_tools names tools the workflow does not have: "
                                      f"{', '.join(unknown)}"))
    if issues:
        issues.sort(key=lambda i: i.line or 0)
        raise PolicyError(issues[0].message, path=source, issues=issues)
    return Policy(
        workflow=model.workflow,
        version=model.version,
        allowed_tools=frozenset(model.allowed_tools),
        budgets=Budgets(**model.budgets.model_dump()),
        approvers=approvers,
        rules=tuple(rules),
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        distinct_from_requester_role=model.approval.distinct_from_requester_role,
        aggregates=aggregates,
        scopes=tuple(scopes),
    )


def _id_and_tools(table: str, index: int, rule_id: str, tools: list[str],
                  lines: dict[tuple[str | int, ...], int], seen: dict[str, int],
                  model: _PolicyModel, issues: list[PolicyIssue]) -> int:
    """Check a rule's or scope's id is unique and its tools allowed; returns its line."""
    line = _locate(lines, (table, index))
    if rule_id in seen:
        issues.append(PolicyIssue(line, f"duplicate rule id {rule_id!r} (first defined on "
                                        f"line {seen[rule_id]})"))
    seen.setdefault(rule_id, line)
    kind = "rule" if table == "rules" else "scope"
    for tool in tools:
        if tool != "*" and tool not in model.allowed_tools:
            issues.append(PolicyIssue(_locate(lines, (table, index, "tools")),
                                      f"{kind} {rule_id!r} names tool {tool!r} that is not in "
                                      "allowed_tools"))
    return line


def _condition(source: str, owner: str, line: int, names: frozenset[str] | None,
               model: _PolicyModel,
               facts: Mapping[str, frozenset[str] | None],
               issues: list[PolicyIssue]) -> Condition | None:
    """Parse one condition and check every name it reads; problems go to `issues`."""
    try:
        condition = Condition(source, names)
    except ExprError as exc:
        issues.append(PolicyIssue(line, f"{owner}: {exc}"))
        return None
    problems = [*_aggregate_references(source, set(model.aggregates)),
                *_namespace_references(source, facts, set(model.allowed_tools))]
    issues.extend(PolicyIssue(line, f"{owner}: {problem}") for problem in problems)
    return None if problems else condition


def _chains(tree: ast.AST) -> list[tuple[str, ...]]:
    """Every outermost `name.attr.attr` chain in a condition (attribute or constant-key
    subscript), as a tuple of names."""
    chains: list[tuple[str, ...]] = []
    inner: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in inner or not isinstance(node, ast.Attribute | ast.Subscript):
            continue
        parts: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute | ast.Subscript):
            inner.add(id(cur))
            if isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
            elif isinstance(cur.slice, ast.Constant) and isinstance(cur.slice.value, str):
                parts.append(cur.slice.value)
            else:
                parts.clear()  # an index: what follows is checked at run time
            cur = cur.value
        if isinstance(cur, ast.Name):
            chains.append((cur.id, *reversed(parts)))
    return chains


def _namespace_references(source: str, facts: Mapping[str, frozenset[str] | None],
                          tools: set[str]) -> list[str]:
    """Problems with the keys a condition reads from the fact namespaces, `history` and
    `run`: a key the workflow does not provide is an error at load, never a silent miss."""
    problems: list[str] = []
    for chain in _chains(ast.parse(source.strip(), mode="eval")):
        root, rest = chain[0], chain[1:]
        if not rest:
            continue
        if root in facts and facts[root] is not None and rest[0] not in (facts[root] or ()):
            problems.append(f"{root}.{rest[0]} is not a fact the workflow provides "
                            f"({root} has: {', '.join(sorted(facts[root] or ())) or 'nothing'})")
        elif root == RUN and rest[0] not in RUN_KEYS:
            problems.append(f"run.{rest[0]} is not known (run has: {', '.join(sorted(RUN_KEYS))})")
        elif root == HISTORY:
            if rest[0] not in HISTORY_VIEWS:
                problems.append(f"history.{rest[0]} is not known (history has: "
                                f"{', '.join(sorted(HISTORY_VIEWS))})")
            elif rest[0] != "calls" and len(rest) > 1 and rest[1] not in tools:
                problems.append(f"history.{rest[0]}.{rest[1]}: {rest[1]!r} is not in "
                                "allowed_tools")
    return problems


def _approvers(model: _PolicyModel, lines: dict[tuple[str | int, ...], int],
               issues: list[PolicyIssue]) -> dict[str, dict[str, tuple[str, ...]]]:
    """`[approvers]`: a role's list applies to every tenant; a `[approvers.ROLE]` table maps
    a tenant (or "*") to its list. Members are normalised here, once, so every later
    comparison is between normalised identities; one that cannot be is an issue."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for role, spec in model.approvers.items():
        by_tenant = {ALL_TENANTS: spec} if isinstance(spec, list) else spec
        out[role] = {}
        for tenant, members in by_tenant.items():
            where: tuple[str | int, ...] = (("approvers", role) if isinstance(spec, list)
                                            else ("approvers", role, tenant))
            if not members:
                issues.append(PolicyIssue(_locate(lines, where),
                                          f"approvers.{role}: the list for tenant {tenant!r} "
                                          "is empty"))
            normalised: list[str] = []
            for member in members:
                try:
                    normalised.append(normalize_identity(member))
                except BadIdentity as exc:
                    issues.append(PolicyIssue(_locate(lines, where),
                                              f"approvers.{role}: {exc}"))
            out[role][tenant] = tuple(dict.fromkeys(normalised))
    return out


def _aggregates(model: _PolicyModel, lines: dict[tuple[str | int, ...], int],
                issues: list[PolicyIssue],
                tool_args: Mapping[str, frozenset[str]] | None) -> dict[str, Aggregate]:
    """The declared aggregates; a problem with one is added to `issues` with its line."""
    out: dict[str, Aggregate] = {}
    for name, spec in model.aggregates.items():
        line = _locate(lines, (AGGREGATES, name))
        problems: list[tuple[int, str]] = []
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problems.append((line, f"aggregate {name!r}: a name is lower-case letters, digits "
                                   "and underscores, starting with a letter"))
        for tool in spec.tools:
            if tool not in model.allowed_tools:
                problems.append((_locate(lines, (AGGREGATES, name, "tools")),
                                 f"aggregate {name!r} names tool {tool!r} that is not in "
                                 "allowed_tools"))
        needed = [(key, arg) for key, arg in (("sum", spec.sum_arg), ("per", spec.per))
                  if arg is not None and not (key == "per" and arg in AGGREGATE_SCOPES)]
        for key, arg in needed:
            for tool in spec.tools:
                if tool_args is not None and tool in tool_args and arg not in tool_args[tool]:
                    problems.append((_locate(lines, (AGGREGATES, name, key)),
                                     f"aggregate {name!r}: {key} = {arg!r} is not an argument "
                                     f"of {tool}"))
        window_s = None
        if spec.window is not None:
            try:
                window_s = parse_window(spec.window)
            except ValueError as exc:
                problems.append((_locate(lines, (AGGREGATES, name, "window")),
                                 f"aggregate {name!r}: {exc}"))
        issues.extend(PolicyIssue(at, message) for at, message in problems)
        if not problems:
            out[name] = Aggregate(name, tuple(spec.tools), spec.sum_arg, spec.per, window_s,
                                  line)
    return out


def _aggregate_references(source: str, declared: set[str]) -> list[str]:
    """Problems with how a condition uses `aggregates`: only as `aggregates.<declared name>`."""
    problems: list[str] = []
    tree = ast.parse(source.strip(), mode="eval")  # Condition() parsed it already
    used = {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == AGGREGATES and node.attr not in declared:
            known = ", ".join(sorted(declared)) or "none are declared"
            problems.append(f"unknown aggregate {node.attr!r} (declared: {known})")
        elif isinstance(node, ast.Name) and node.id == AGGREGATES and id(node) not in used:
            problems.append("use an aggregate by name: aggregates.<name>")
    return problems


def load_policy(path: str | Path, *, known_tools: set[str] | None = None,
                tool_args: Mapping[str, frozenset[str]] | None = None,
                facts: Mapping[str, frozenset[str] | None] | None = None) -> Policy:
    """Load a policy file; raises PolicyError (one line) when it is missing or invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("policy file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file: {exc}", path=str(p)) from None
    return parse_policy(text, source=str(p), known_tools=known_tools, tool_args=tool_args,
                        facts=facts)

"""The policy gate: every rule of the support policy, every fail-closed case, and a property
test that no generated call gets past the gate (or reaches a tool) unless it is valid and in
the run's tenant."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import BaseModel, ValidationError

from checkpoints.backend import SqliteBackend
from checkpoints.runs import RunStore
from graph.context import RunContext
from graph.factory import build_graph
from graph.models import EVIDENCE_MARK, ScriptedChatModel, extract_block
from graph.state import InputState, Ticket, usage_delta
from graph.workflows import get_workflow
from tools.base import ToolContext, ToolSpec
from tools.ledger import ensure_ledger
from tools.support import build_support_db, open_support_db, support_registry
from verifiers.gate import GateDecision, GateRequest, Usage, evaluate_gate, run_facts
from verifiers.policy import Policy, PolicyError, load_policy, parse_policy

SUPPORT = get_workflow("support")
POLICY_TEXT = SUPPORT.policy_path.read_text()
POLICY = load_policy(SUPPORT.policy_path)
REGISTRY = support_registry()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = tmp_path_factory.mktemp("gate") / "support.db"
    build_support_db(path)
    conn = open_support_db(path)
    yield conn
    conn.close()


def usage(**kw: float) -> Usage:
    return usage_delta(**kw)


def request(db: sqlite3.Connection, tool: str, args: dict[str, Any] | None, *,
            customer: str | None = "CUS-0002", ticket: str | None = "TKT-1002",
            tenant: str = "acme", policy: Policy | None = POLICY,
            policy_error: str | None = None, kill: str | None = None,
            used: Usage | None = None, elapsed: float = 1.0, facts: Any = SUPPORT.facts,
            history: list[dict[str, Any]] | None = None) -> GateRequest:
    """A gate request as the gate node builds it. The run's history, unless given: a refund
    comes after the get_order of its order, as the planner always does it."""
    if history is None:
        order = (args or {}).get("order_id")
        history = [{"tool": "get_order", "args": {"order_id": order}, "result": {},
                    "error": None}] if tool == "create_refund_request" and order else []
    tool_ctx = ToolContext(conn=db, tenant_id=tenant, run_id="run-gate", customer_id=customer,
                           ticket_id=ticket)
    return GateRequest(tool=tool, args=args, usage=used or usage(), elapsed_seconds=elapsed,
                       kill_reason=kill, policy=policy, policy_error=policy_error,
                       registry=REGISTRY, tool_ctx=tool_ctx, facts=facts, history=history,
                       run=run_facts(tool_ctx, "ops@signoff.local", "support"))


def refund(order: str, cents: int) -> dict[str, Any]:
    return {"order_id": order, "amount_cents": cents, "reason": "customer refund request"}


# Every rule in verifiers/policies/support.toml ---------------------------------------------

@dataclass(frozen=True)
class RuleCase:
    name: str
    tool: str
    args: dict[str, Any]
    customer: str
    ticket: str
    rule_id: str
    tier: str
    route: str
    tenant: str = "acme"
    refunded_before: int = 0
    """Cents already refunded on the call's order through the ledger (committed just now)."""
    history: tuple[dict[str, Any], ...] | None = None
    """The run's earlier calls; None: the usual ones (see `request`)."""


RULE_CASES = [
    RuleCase("lookup own customer", "lookup_customer", {"email": "marcus.oyelaran@example.com"},
             "CUS-0002", "TKT-1002", "read.green", "green", "execute"),
    RuleCase("get own order", "get_order", {"order_id": "ORD-10002"},
             "CUS-0002", "TKT-1002", "read.green", "green", "execute"),
    RuleCase("list own orders", "list_orders", {"customer_id": "CUS-0002", "limit": 5},
             "CUS-0002", "TKT-1002", "read.green", "green", "execute"),
    RuleCase("refund before its order was read", "create_refund_request",
             refund("ORD-10001", 1800), "CUS-0001", "TKT-1001", "refund.order_not_read", "red",
             "block", history=()),
    RuleCase("refund after reading another order", "create_refund_request",
             refund("ORD-10001", 1800), "CUS-0001", "TKT-1001", "refund.order_not_read", "red",
             "block", history=({"tool": "get_order", "args": {"order_id": "ORD-10002"},
                                "result": {}, "error": None},)),
    RuleCase("refund after a failed read of its order", "create_refund_request",
             refund("ORD-10001", 1800), "CUS-0001", "TKT-1001", "refund.order_not_read", "red",
             "block", history=({"tool": "get_order", "args": {"order_id": "ORD-10001"},
                                "result": None, "error": "timeout"},)),
    RuleCase("refund on flagged account", "create_refund_request", refund("ORD-10010", 3000),
             "CUS-0010", "TKT-1009", "refund.flagged_account", "red", "block"),
    RuleCase("flagged beats small amount", "create_refund_request", refund("ORD-10010", 100),
             "CUS-0010", "TKT-1009", "refund.flagged_account", "red", "block"),
    RuleCase("refund over ceiling", "create_refund_request", refund("ORD-10003", 74000),
             "CUS-0003", "TKT-1003", "refund.over_ceiling", "red", "block"),
    RuleCase("one cent over ceiling", "create_refund_request", refund("ORD-10003", 50001),
             "CUS-0003", "TKT-1003", "refund.over_ceiling", "red", "block"),
    RuleCase("exactly the ceiling is held", "create_refund_request", refund("ORD-10003", 50000),
             "CUS-0003", "TKT-1003", "refund.needs_approval", "yellow", "verify"),
    RuleCase("refund needs approval", "create_refund_request", refund("ORD-10002", 12000),
             "CUS-0002", "TKT-1002", "refund.needs_approval", "yellow", "verify"),
    RuleCase("one cent over automatic", "create_refund_request", refund("ORD-10002", 5001),
             "CUS-0002", "TKT-1002", "refund.needs_approval", "yellow", "verify"),
    RuleCase("exactly $50 is automatic", "create_refund_request", refund("ORD-10002", 5000),
             "CUS-0002", "TKT-1002", "refund.small", "green", "verify"),
    RuleCase("small refund", "create_refund_request", refund("ORD-10001", 1800),
             "CUS-0001", "TKT-1001", "refund.small", "green", "verify"),
    RuleCase("ticket note", "add_ticket_note",
             {"ticket_id": "TKT-1002", "body": "We are on it.", "visibility": "public"},
             "CUS-0002", "TKT-1002", "note.green", "green", "verify"),
    RuleCase("hand-off", "escalate_to_human",
             {"ticket_id": "TKT-1002", "reason": "customer wants a call"},
             "CUS-0002", "TKT-1002", "handoff.green", "green", "verify"),
    RuleCase("globex small refund", "create_refund_request", refund("ORD-10011", 1250),
             "CUS-0041", "TKT-2001", "refund.small", "green", "verify", tenant="globex"),
    RuleCase("small refund after another on the order", "create_refund_request",
             refund("ORD-10048", 4900), "CUS-0025", "TKT-1002", "refund.cumulative_on_order",
             "yellow", "verify", refunded_before=4900),
    RuleCase("small refunds up to $50 on the order", "create_refund_request",
             refund("ORD-10048", 100), "CUS-0025", "TKT-1002", "refund.small", "green",
             "verify", refunded_before=4900),
]


def test_every_policy_rule_has_a_case() -> None:
    assert {r.id for r in POLICY.rules} <= {c.rule_id for c in RULE_CASES}


@pytest.mark.parametrize("case", RULE_CASES, ids=[c.name for c in RULE_CASES])
def test_policy_rule(db: sqlite3.Connection, case: RuleCase) -> None:
    if case.refunded_before:
        ensure_ledger(db)
        db.execute("INSERT INTO mutation_ledger (key, run_id, step, tool, args, result, "
                   "committed_at, tenant_id, customer_id) VALUES ('k', 'run-x', 1, "
                   "'create_refund_request', ?, '{}', ?, ?, ?)",
                   (json.dumps({**case.args, "amount_cents": case.refunded_before}),
                    time.time(), case.tenant, case.customer))
    try:
        decision = evaluate_gate(request(db, case.tool, case.args, customer=case.customer,
                                         ticket=case.ticket, tenant=case.tenant,
                                         history=None if case.history is None
                                         else list(case.history)))
    finally:
        db.rollback()
    assert (decision["rule_id"], decision["tier"], decision["route"]) == \
        (case.rule_id, case.tier, case.route), decision
    rule = POLICY.rule(case.rule_id)
    assert rule is not None and decision["reason"] == rule.reason
    assert decision["policy_version"] == POLICY.version
    assert decision["policy_digest"] == POLICY.digest


def test_held_refund_names_the_roles_that_may_approve(db: sqlite3.Connection) -> None:
    decision = evaluate_gate(request(db, "create_refund_request", refund("ORD-10002", 12000)))
    assert decision.get("approver_roles") == ["support_lead"]
    green = evaluate_gate(request(db, "create_refund_request", refund("ORD-10002", 1200)))
    assert "approver_roles" not in green


# Every fail-closed case ------------------------------------------------------------------

def _policy_variant(*edits: tuple[str, str]) -> Policy:
    text = POLICY_TEXT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    return parse_policy(text, source="variant.toml")


NO_LIST_ORDERS = _policy_variant(
    ('"lookup_customer", "get_order", "list_orders",', '"lookup_customer", "get_order",'),
    ('tools = ["lookup_customer", "get_order", "list_orders"]',
     'tools = ["lookup_customer", "get_order"]'))
BAD_CONDITION = _policy_variant(('tools = ["lookup_customer", "get_order", "list_orders"]\n',
                                 'tools = ["lookup_customer", "get_order", "list_orders"]\n'
                                 'when = "args.order_id > 5"\n'))
MISSING_FACT = _policy_variant(('tools = ["add_ticket_note"]\n',
                                'tools = ["add_ticket_note"]\nwhen = "args.amount_cents < 100"\n'))
NO_HANDOFF_RULE = _policy_variant(('tools = ["escalate_to_human"]\n',
                                   'tools = ["escalate_to_human"]\nwhen = "false"\n'))


def _missing_policy_error() -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(Path("/nonexistent/support.toml"))
    return str(info.value)


def _invalid_policy_error() -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(POLICY_TEXT.replace('tier = "yellow"', 'tier = "amber"'), source="x.toml")
    return str(info.value)


def _raising_facts(ctx: ToolContext, tool: str, args: BaseModel) -> dict[str, Any]:
    raise sqlite3.OperationalError("database is locked")


READ = ("get_order", {"order_id": "ORD-10002"})
LIMITS = POLICY.budgets


@dataclass(frozen=True)
class BlockCase:
    name: str
    tool: str
    args: dict[str, Any] | None
    rule_id: str
    reason_has: str
    kw: dict[str, Any] = field(default_factory=dict)


BLOCK_CASES = [
    BlockCase("unknown tool", "drop_all_tables", {}, "tool.unknown", "unknown tool"),
    BlockCase("not in allowlist", "list_orders", {"customer_id": "CUS-0002"},
              "tool.not_allowed", "allowlist", {"policy": NO_LIST_ORDERS}),
    BlockCase("args not JSON", "create_refund_request", None, "args.not_json", "not valid JSON"),
    BlockCase("true is not an amount", "create_refund_request",
              {**refund("ORD-10002", 1), "amount_cents": True}, "args.schema",
              "amount_cents: Input should be a valid integer"),
    BlockCase("a numeric string is not an amount", "create_refund_request",
              {**refund("ORD-10002", 1), "amount_cents": "9000"}, "args.schema",
              "amount_cents: Input should be a valid integer"),
    BlockCase("NUL in a note", "add_ticket_note", {"ticket_id": "TKT-1002", "body": "hi\x00"},
              "args.schema", "body: Text holds a control character (U+0000)"),
    BlockCase("escape in a reason", "escalate_to_human",
              {"ticket_id": "TKT-1002", "reason": "call \x1b[2Jme"}, "args.schema",
              "reason: Text holds a control character (U+001B)"),
    BlockCase("out of tenant", "get_order", {"order_id": "ORD-10012"}, "scope",
              "another tenant"),
    BlockCase("other tenant's ticket", "add_ticket_note",
              {"ticket_id": "TKT-2001", "body": "hi"}, "scope", "another tenant"),
    BlockCase("other customer's order", "create_refund_request", refund("ORD-10007", 2500),
              "scope", "another customer"),
    BlockCase("other customer's email", "lookup_customer", {"email": "dana.whitfield@example.com"},
              "scope", "not the ticket's customer"),
    BlockCase("another ticket", "escalate_to_human", {"ticket_id": "TKT-1001", "reason": "x" * 5},
              "scope", "not this run's ticket"),
    BlockCase("model calls", *READ, "budget.model_calls", "model calls",
              {"used": usage(model_calls=LIMITS.model_calls + 1)}),
    BlockCase("tokens", *READ, "budget.tokens", "tokens",
              {"used": usage(tokens=LIMITS.tokens + 1)}),
    BlockCase("tool calls", *READ, "budget.tool_calls", "tool call",
              {"used": usage(tool_calls=LIMITS.tool_calls)}),
    BlockCase("retries", *READ, "budget.retries", "retries",
              {"used": usage(retries=LIMITS.retries + 1)}),
    BlockCase("wall seconds", *READ, "budget.wall_seconds", "run time",
              {"elapsed": LIMITS.wall_seconds + 1}),
    BlockCase("money", *READ, "budget.money", "model spend",
              {"used": usage(cost_usd=LIMITS.money_usd + 0.01)}),
    BlockCase("money of unknown cost", *READ, "budget.money", "model with no price",
              {"used": usage(unpriced_calls=1)}),
    BlockCase("kill switch", *READ, "kill_switch", "refund bug",
              {"kill": "kill switch for workflow support set by ops: refund bug"}),
    BlockCase("kill switch beats an unknown tool", "nope", None, "kill_switch", "stop",
              {"kill": "stop"}),
    BlockCase("policy missing", *READ, "policy.invalid", "policy file not found",
              {"policy": None, "policy_error": _missing_policy_error()}),
    BlockCase("policy invalid", *READ, "policy.invalid", "rules.4.tier",
              {"policy": None, "policy_error": _invalid_policy_error()}),
    BlockCase("no policy and no reason", *READ, "policy.invalid", "no policy is loaded",
              {"policy": None}),
    BlockCase("condition type error", *READ, "read.green", "could not be evaluated",
              {"policy": BAD_CONDITION}),
    BlockCase("condition names a missing argument", "add_ticket_note",
              {"ticket_id": "TKT-1002", "body": "hi"}, "note.green", "could not be evaluated",
              {"policy": MISSING_FACT}),
    BlockCase("no rule matches", "escalate_to_human",
              {"ticket_id": "TKT-1002", "reason": "needs a human"}, "policy.no_rule",
              "no policy rule covers", {"policy": NO_HANDOFF_RULE}),
    BlockCase("facts lookup fails", "create_refund_request", refund("ORD-10002", 1000),
              "gate.error", "database is locked", {"facts": _raising_facts}),
]


@pytest.mark.parametrize("case", BLOCK_CASES, ids=[c.name for c in BLOCK_CASES])
def test_fails_closed(db: sqlite3.Connection, case: BlockCase) -> None:
    decision = evaluate_gate(request(db, case.tool, case.args, **case.kw))
    assert decision["route"] == "block" and decision["tier"] == "red", decision
    assert decision["rule_id"] == case.rule_id, decision
    assert case.reason_has in decision["reason"], decision


@pytest.mark.parametrize("limit", ["model_calls", "tokens", "retries", "cost_usd"])
def test_spending_exactly_the_budget_is_allowed(db: sqlite3.Connection, limit: str) -> None:
    budget = {"model_calls": LIMITS.model_calls, "tokens": LIMITS.tokens,
              "retries": LIMITS.retries, "cost_usd": LIMITS.money_usd}[limit]
    decision = evaluate_gate(request(db, *READ, used=usage(**{limit: budget}),
                                     elapsed=LIMITS.wall_seconds))
    assert decision["route"] == "execute", decision


def test_schema_errors_are_kept(db: sqlite3.Connection) -> None:
    decision = evaluate_gate(request(db, "create_refund_request",
                                     {"order_id": "10002", "amount_cents": -5, "extra": 1}))
    assert decision["rule_id"] == "args.schema" and decision["route"] == "block"
    errors = decision.get("errors") or []
    fields = {e.split(":")[0] for e in errors}
    assert {"order_id", "amount_cents", "reason", "extra"} <= fields, errors


def test_gate_order_unknown_tool_before_schema(db: sqlite3.Connection) -> None:
    # An unknown tool is reported as such even when its arguments are also garbage.
    assert evaluate_gate(request(db, "refund_everything", None))["rule_id"] == "tool.unknown"


# Property: whatever the tool name and arguments, the gate never raises, and lets through
# only schema-valid calls inside the run's tenant -------------------------------------------

KNOWN_IDS = {
    "order_id": ["ORD-10001", "ORD-10002", "ORD-10003", "ORD-10007", "ORD-10010", "ORD-10012",
                 "ORD-99999"],
    "customer_id": ["CUS-0001", "CUS-0002", "CUS-0042", "CUS-9999"],
    "ticket_id": ["TKT-1001", "TKT-1002", "TKT-2001", "TKT-9999"],
    "email": ["marcus.oyelaran@example.com", "dana.whitfield@example.com",
              "elena.kovacs@example.com", "nobody@example.com"],
}


def _field_strategy(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one field, from its JSON schema (plus known ids, to hit real rows)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 10**9) - 1)
        return st.integers(min_value=low, max_value=high)
    if kind == "string":
        if "pattern" in schema:
            generated = st.from_regex(schema["pattern"], fullmatch=True)
            known = KNOWN_IDS.get(name)
            return st.one_of(st.sampled_from(known), generated) if known else generated
        text = st.text(min_size=schema.get("minLength", 0),
                       max_size=min(schema.get("maxLength", 40), 40))
        return text.filter(lambda s: len(s.strip()) >= schema.get("minLength", 0))
    raise AssertionError(f"no strategy for field {name}: {schema}")


def valid_args(spec: ToolSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments built from the tool's input model's JSON schema."""
    schema = spec.input_model.model_json_schema()
    required = set(schema.get("required", []))
    fields = {}
    for name, prop in schema["properties"].items():
        value = _field_strategy(name, prop)
        fields[name] = value
    return st.fixed_dictionaries({k: v for k, v in fields.items() if k in required},
                                 optional={k: v for k, v in fields.items()
                                           if k not in required})


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=3),
    max_leaves=8)
RANDOM_ARGS = st.dictionaries(
    st.sampled_from(["order_id", "amount_cents", "reason", "email", "customer_id", "ticket_id",
                     "body", "visibility", "limit"]) | st.text(max_size=10),
    JSONISH, max_size=5)
TOOL_NAMES = st.sampled_from(REGISTRY.names()) | st.text(max_size=30)


@st.composite
def proposals(draw: st.DrawFn) -> tuple[str, dict[str, Any] | None]:
    tool = draw(TOOL_NAMES)
    spec = REGISTRY.get(tool)
    options = [st.none(), RANDOM_ARGS]
    if spec is not None:
        options.append(valid_args(spec))
        options.append(valid_args(spec))  # weight towards valid-looking calls
    return tool, draw(st.one_of(*options))


def is_valid(tool: str, args: Any) -> BaseModel | None:
    spec = REGISTRY.get(tool)
    if spec is None or not isinstance(args, dict):
        return None
    try:
        return spec.parse_args(args)
    except ValidationError:
        return None


def check_decision(decision: GateDecision, ctx: ToolContext, tool: str, args: Any) -> None:
    assert decision["rule_id"] and decision["reason"].strip()
    assert decision["rule_id"] != "gate.error", decision  # nothing unexpected was raised
    parsed = is_valid(tool, args)
    if parsed is None:
        assert decision["route"] == "block", (tool, args, decision)
        return
    if decision["route"] != "block":
        spec = REGISTRY.get(tool)
        assert spec is not None and tool in POLICY.allowed_tools
        assert spec.scope is None or spec.scope(ctx, parsed) is None, (tool, args)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(proposal=proposals(), who=st.sampled_from([("acme", "CUS-0002", "TKT-1002"),
                                                   ("acme", "CUS-0010", "TKT-1009"),
                                                   ("globex", "CUS-0041", "TKT-2001"),
                                                   ("acme", None, None)]))
def test_gate_property(db: sqlite3.Connection, proposal: tuple[str, Any],
                       who: tuple[str, str | None, str | None]) -> None:
    tool, args = proposal
    tenant, customer, ticket = who
    req = request(db, tool, args, tenant=tenant, customer=customer, ticket=ticket)
    check_decision(evaluate_gate(req), req.tool_ctx, tool, args)


# The same property through the whole graph: a tool only ever runs with valid arguments ----

class OneCallPlanner(ScriptedChatModel):
    """Proposes one given call (raw, possibly invalid), then says DONE."""

    tool: str
    args: Any = None

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        if extract_block(messages, EVIDENCE_MARK):
            return AIMessage(content="DONE: one call made")
        if isinstance(self.args, dict):
            return AIMessage(content="", tool_calls=[{"name": self.tool, "args": self.args,
                                                      "id": "call_1"}])
        return AIMessage(content="", invalid_tool_calls=[{
            "name": self.tool, "args": "{not json", "id": "call_1", "error": "bad JSON",
            "type": "invalid_tool_call"}])


@dataclass
class RecordingTools:
    """A tool wrapper (the registry's fault seam) that records every call reaching a tool."""

    calls: list[tuple[str, BaseModel]] = field(default_factory=list)

    def apply(self, spec: ToolSpec) -> ToolSpec:
        inner = spec.run

        def run(ctx: ToolContext, args: Any) -> BaseModel:
            self.calls.append((spec.name, args))
            return inner(ctx, args)

        return ToolSpec(spec.name, spec.description, spec.input_model, spec.output_model,
                        spec.mutates, spec.risk, run, spec.scope)


@pytest.fixture(scope="module")
def graph_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("gate-graph")
    build_support_db(root / "support.db")
    conn = open_support_db(root / "support.db")
    from tools.ledger import ensure_ledger
    ensure_ledger(conn)
    runs = RunStore.open(SqliteBackend(root))
    yield {"db": conn, "runs": runs, "graph": build_graph().compile(checkpointer=InMemorySaver())}
    conn.close()
    runs.close()


def run_one_call(env: dict[str, Any], tool: str, args: Any) -> RecordingTools:
    """Run the graph on TKT-1002 with a planner proposing exactly this call; approve it if
    the gate holds it. Returns what reached the tools."""
    recorder = RecordingTools()
    run_id = f"run-prop-{time.perf_counter_ns()}"
    ctx = RunContext(run_id=run_id, tenant_id="acme", requester="ops@signoff.local",
                     workflow=SUPPORT, registry=support_registry(recorder), policy=POLICY,
                     policy_error=None, planner=OneCallPlanner(tool=tool, args=args),
                     checker=SUPPORT.checker(), db=env["db"], runs=env["runs"])
    inputs = InputState(run_id=run_id, ticket=Ticket(
        ticket_id="TKT-1002", customer_id="CUS-0002",
        customer_email="marcus.oyelaran@example.com", subject="Headphones stopped working",
        body="Please refund $120.00 for ORD-10002."),
        started_at=time.time(), step=0, usage=usage_delta(), evidence={})
    config = {"configurable": {"thread_id": run_id}}
    out = env["graph"].invoke(inputs, config, context=ctx)
    if "__interrupt__" in out:
        env["graph"].invoke(Command(resume={"action": "approve", "by": "lead@acme.example"}),
                            config, context=ctx)
    return recorder


def test_the_recording_seam_sees_a_valid_call(graph_env: dict[str, Any]) -> None:
    calls = run_one_call(graph_env, "get_order", {"order_id": "ORD-10002"}).calls
    assert [(name, args.model_dump()) for name, args in calls] == \
        [("get_order", {"order_id": "ORD-10002"})]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(proposal=proposals())
def test_graph_never_lets_an_invalid_call_reach_a_tool(graph_env: dict[str, Any],
                                                       proposal: tuple[str, Any]) -> None:
    tool, args = proposal
    calls = run_one_call(graph_env, tool, args).calls
    parsed = is_valid(tool, args)
    if parsed is None:
        assert calls == [], (tool, args)
    for name, called_with in calls:
        spec = REGISTRY.get(name)
        assert spec is not None and name == tool
        assert isinstance(called_with, spec.input_model)
        assert called_with == parsed


@pytest.mark.parametrize("limit", [True, "5", 5.0], ids=["true", "numeric string", "float"])
def test_a_model_written_call_is_checked_strictly(graph_env: dict[str, Any],
                                                  limit: Any) -> None:
    # Lax parsing read `true` as 1 (a refund of `true` paid out one cent); now the call is
    # refused at the gate and no tool runs.
    args = {"customer_id": "CUS-0002", "limit": limit}
    assert run_one_call(graph_env, "list_orders", args).calls == []
    assert len(run_one_call(graph_env, "list_orders", {**args, "limit": 5}).calls) == 1


def test_multiline_text_is_still_text(db: sqlite3.Connection) -> None:
    body = "Line one.\n\tLine two.\r\n"
    decision = evaluate_gate(request(db, "add_ticket_note",
                                     {"ticket_id": "TKT-1002", "body": body}))
    assert decision["route"] == "verify", decision


def test_a_model_with_no_price_is_refused_at_run_start(home: Path) -> None:
    from graph.errors import SignoffError
    from graph.observe import price_fn
    from graph.runner import Home, Runner
    from tests.conftest import sample

    assert price_fn()("a-model-nobody-priced", 1000, 100) is None
    assert price_fn()("scripted-support-planner", 1000, 100) == 0.0

    def refunds() -> int:
        with sqlite3.connect(home / "support.db") as conn:
            return conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]

    unpriced = Runner(Home(home), price=lambda model, tokens_in, tokens_out: None)
    unpriced.ensure_domain_db(get_workflow("support"))
    before = refunds()
    # Before the planner's first call: nothing is spent on a model the budget cannot price,
    # and no run is registered.
    with pytest.raises(SignoffError, match="SIGNOFF_PRICES") as refused:
        unpriced.start("support", sample("TKT-1001"), requester="ops@signoff.local")
    assert "planner model 'scripted-support-planner' has no price" in str(refused.value)
    assert unpriced.runs.list() == []
    unpriced.close()
    assert refunds() == before

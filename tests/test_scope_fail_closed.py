"""Every shipped scope check refuses a run that lacks the tenant, customer or ticket it
compares against: "unknown" never reads as "anyone" (issue 17, item 4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from graph.context import Workflow
from graph.runner import Runner
from graph.workflows import get_workflow
from tools.base import ToolContext
from tools.common import run_scope_missing
from verifiers.gate import GateRequest, evaluate_gate, run_facts
from verifiers.policy import load_policy

# (workflow, tool, valid arguments for the workflow's first sample ticket, the run fields its
# scope check compares against). Every tool a shipped registry gives a scope appears here.
CASES: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    ("support", "lookup_customer", {"email": "dana.whitfield@example.com"},
     ("tenant_id", "customer_id")),
    ("support", "get_order", {"order_id": "ORD-10001"}, ("tenant_id", "customer_id")),
    ("support", "list_orders", {"customer_id": "CUS-0001"}, ("tenant_id", "customer_id")),
    ("support", "create_refund_request",
     {"order_id": "ORD-10001", "amount_cents": 1800, "reason": "mugs arrived broken"},
     ("tenant_id", "customer_id")),
    ("support", "add_ticket_note", {"ticket_id": "TKT-1001", "body": "Refunded.",
                                    "visibility": "public"}, ("tenant_id", "ticket_id")),
    ("support", "escalate_to_human", {"ticket_id": "TKT-1001", "reason": "needs a human"},
     ("tenant_id", "ticket_id")),
    ("access", "list_grants", {"employee_id": "EMP-0003"}, ("tenant_id",)),
    ("access", "grant_access", {"employee_id": "EMP-0003", "system_id": "data-warehouse",
                                "level": "read", "reason": "quarterly review"}, ("tenant_id",)),
    ("access", "revoke_access", {"employee_id": "EMP-0003", "system_id": "data-warehouse",
                                 "level": "read", "reason": "quarterly review"}, ("tenant_id",)),
    ("access", "add_request_note", {"request_id": "REQ-3001", "body": "Here is your access."},
     ("tenant_id", "ticket_id")),
    ("access", "escalate_to_human", {"request_id": "REQ-3001", "reason": "needs a human"},
     ("tenant_id", "ticket_id")),
]
MISSING = [pytest.param(wf, tool, args, field, id=f"{wf}-{tool}-no-{field.removesuffix('_id')}")
           for wf, tool, args, fields in CASES for field in fields]


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sqlite3.Connection]]:
    conns = {}
    for name in ("support", "access"):
        workflow = get_workflow(name)
        path = tmp_path_factory.mktemp(name) / workflow.db_filename
        workflow.build_db(path)
        conns[name] = workflow.open_db(path)
    yield conns
    for conn in conns.values():
        conn.close()


def full_context(workflow: Workflow, conn: sqlite3.Connection) -> ToolContext:
    ticket = workflow.sample_tickets()[0]
    return ToolContext(conn=conn, tenant_id=ticket.tenant_id, run_id="run-scope",
                       customer_id=ticket.customer_id, ticket_id=ticket.ticket_id)


def test_every_scoped_shipped_tool_is_covered() -> None:
    covered = {(wf, tool) for wf, tool, _args, _fields in CASES}
    scoped = {(name, spec.name) for name in ("support", "access")
              for spec in get_workflow(name).tools() if spec.scope is not None}
    assert covered == scoped


@pytest.mark.parametrize(("wf", "tool", "args", "fields"),
                         [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in CASES])
def test_a_run_with_its_scope_passes_the_scope_check(
        domains: dict[str, sqlite3.Connection], wf: str, tool: str, args: dict[str, Any],
        fields: tuple[str, ...]) -> None:
    workflow = get_workflow(wf)
    spec = workflow.tools().get(tool)
    assert spec is not None and spec.scope is not None
    ctx = full_context(workflow, domains[wf])
    assert spec.scope(ctx, spec.parse_args(args)) is None


@pytest.mark.parametrize(("wf", "tool", "args", "field"), MISSING)
@pytest.mark.parametrize("blank", [None, ""], ids=["none", "empty"])
def test_a_run_without_its_scope_is_blocked_and_changes_nothing(
        domains: dict[str, sqlite3.Connection], wf: str, tool: str, args: dict[str, Any],
        field: str, blank: str | None) -> None:
    workflow = get_workflow(wf)
    conn = domains[wf]
    ctx = replace(full_context(workflow, conn), **{field: blank})
    before = conn.total_changes
    decision = evaluate_gate(GateRequest(
        tool=tool, args=args, usage={}, elapsed_seconds=1.0, kill_reason=None,  # type: ignore[typeddict-item]
        policy=load_policy(workflow.policy_path), policy_error=None, registry=workflow.tools(),
        tool_ctx=ctx, facts=workflow.facts, run=run_facts(ctx, "ops@signoff.local", wf)))
    word = field.removesuffix("_id")
    assert (decision["route"], decision["rule_id"]) == ("block", "scope")
    assert decision["reason"] == f"the run has no {word}: refused (scope cannot be checked)"
    assert conn.total_changes == before


def test_run_scope_missing_names_the_first_missing_field(
        domains: dict[str, sqlite3.Connection]) -> None:
    ctx = full_context(get_workflow("support"), domains["support"])
    assert run_scope_missing(ctx, "tenant_id", "customer_id", "ticket_id") is None
    assert run_scope_missing(replace(ctx, ticket_id=" "), "ticket_id") == (
        "the run has no ticket: refused (scope cannot be checked)")
    with pytest.raises(ValueError, match="unknown run scope field 'order_id'"):
        run_scope_missing(ctx, "order_id")


def test_a_support_run_without_a_customer_is_blocked_before_any_change(
        runner: Runner, home: Path) -> None:
    support = get_workflow("support")
    ticket = replace(support.sample_tickets()[0], customer_id=None)
    runner.ensure_domain_db(support)
    result = runner.start("support", ticket, requester="ops@signoff.local")
    assert result.status == "blocked"
    assert result.reason == ("gate scope: the run has no customer: refused "
                             "(scope cannot be checked)")
    with sqlite3.connect(home / support.db_filename) as conn:
        for table in ("mutation_ledger", "refunds", "ticket_notes", "escalations"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",
                                (result.run_id,)).fetchone() == (0,)


INVARIANT_CASES = [
    pytest.param("support", "create_refund_request", "customer_id",
                 id="support-refund-no-customer"),
    pytest.param("support", "add_ticket_note", "ticket_id", id="support-note-no-ticket"),
    pytest.param("support", "escalate_to_human", "ticket_id", id="support-escalate-no-ticket"),
    pytest.param("access", "add_request_note", "ticket_id", id="access-note-no-ticket"),
    pytest.param("access", "escalate_to_human", "ticket_id", id="access-escalate-no-ticket"),
]


@pytest.mark.parametrize(("wf", "tool", "field"), INVARIANT_CASES)
def test_the_invariants_behind_the_scope_fail_closed_too(
        domains: dict[str, sqlite3.Connection], wf: str, tool: str, field: str) -> None:
    """Verify (and verify at commit) refuses what the gate would: a second line of defence
    that does not read "no customer" as "any customer" either."""
    workflow = get_workflow(wf)
    args = next(a for w, t, a, _fields in CASES if (w, t) == (wf, tool))
    spec = workflow.tools().get(tool)
    assert spec is not None
    normalized = spec.parse_args(args).model_dump(mode="json")
    full = full_context(workflow, domains[wf])
    assert all(check(full, tool, normalized)[0] for check in workflow.invariants[tool])
    ctx = replace(full, **{field: None})
    verdicts = [check(ctx, tool, normalized) for check in workflow.invariants[tool]]
    word = field.removesuffix("_id")
    assert (False, f"the run has no {word}: refused (scope cannot be checked)") in verdicts

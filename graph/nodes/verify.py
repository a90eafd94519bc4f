"""verify: rule invariants, then the second-model argument check, before any mutation.

Either failing blocks the action. Both verdicts are stored in state and reported.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.evidence import evidence_for_model
from graph.models import model_name_of
from graph.state import AgentState, RuleCheck, Verdict, add_usage, model_usage, usage_delta
from tools.ledger import call_digest
from verifiers.argument_check import check_arguments


def run_invariants(ctx: RunContext, state: AgentState, tool: str,
                   args: dict[str, Any]) -> list[RuleCheck]:
    checks: list[RuleCheck] = []
    tool_ctx = ctx.tool_ctx(state["ticket"])
    for invariant in ctx.workflow.invariants.get(tool, ()):
        rule_id = getattr(invariant, "rule_id", getattr(invariant, "__name__", "invariant"))
        try:
            ok, reason = invariant(tool_ctx, tool, args)
        except Exception as exc:  # noqa: BLE001 - an invariant that cannot decide fails
            ok, reason = False, f"could not be checked: {exc}"
        checks.append(RuleCheck(rule_id=rule_id, ok=ok, reason=reason))
    return checks


def verify(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    proposal = state.get("proposal")
    assert proposal is not None and proposal["args"] is not None
    tool, args = proposal["tool"], proposal["args"]
    spec = ctx.registry.get(tool)
    assert spec is not None  # the gate blocked unknown tools
    normalized = spec.parse_args(args).model_dump(mode="json")
    invariants = run_invariants(ctx, state, tool, normalized)

    evidence = evidence_for_model(state["evidence"])
    name = model_name_of(ctx.checker)
    check = check_arguments(ctx.checker, name, state["ticket"], evidence, tool, normalized,
                            origin=proposal["origin"],
                            reads=ctx.workflow.verdict_reads.get(tool, ()),
                            settings=ctx.checker_settings)
    model_check = RuleCheck(rule_id=f"model_check:{name}", ok=check.ok, reason=check.reason)
    failed = [c for c in invariants if not c["ok"]] + ([] if check.ok else [model_check])
    reason = "; ".join(f"{c['rule_id']}: {c['reason']}" for c in failed) or "all checks passed"
    verdict = Verdict(ok=not failed, invariants=invariants, model_check=model_check, reason=reason,
                      call_digest=call_digest(tool, args))

    key = f"{state['step']}:{proposal['call_id']}:{proposal['origin']}"
    if ctx.recorder is not None:
        for ref, entry in state["evidence"].items():  # what the verdict relied on
            # Event keys are stored as they are: hash the reference, which may hold PII.
            digest = hashlib.sha256(ref.encode()).hexdigest()[:16]
            ctx.recorder.evidence(state["run_id"], f"evidence:{key}:{digest}",
                                  source=entry["tool"], ref=ref)
        for n, attempt in enumerate(check.attempts):  # each request sent, retries included
            ctx.recorder.model_call(state["run_id"], f"verify-model:{key}" + (f":{n}" if n else ""),
                                    node="verify", model=name, tokens_in=attempt.tokens_in,
                                    tokens_out=attempt.tokens_out, latency_s=attempt.latency_s)
        for c in invariants:
            ctx.recorder.decision(state["run_id"], f"verify_rules:{key}:{c['rule_id']}",
                                  step=state["step"], kind="verify_rules",
                                  verdict="pass" if c["ok"] else "fail",
                                  rule_id=c["rule_id"], reason=c["reason"])
        ctx.recorder.decision(state["run_id"], f"verify_model:{key}", step=state["step"],
                              kind="verify_model", verdict="pass" if check.ok else "fail",
                              rule_id=model_check["rule_id"], reason=check.reason)
    usage = usage_delta()
    for attempt in check.attempts:
        usage = add_usage(usage, model_usage(attempt.tokens_in, attempt.tokens_out, ctx.price(
            name, attempt.tokens_in, attempt.tokens_out)))
    update: dict[str, Any] = {"verdict": verdict, "usage": usage}
    held = state.get("gate")
    if not failed and held is not None and held["tier"] == "yellow":
        update["held_since"] = ctx.clock()  # approve waits next: that time is not the agent's
    if failed:
        update["outcome"] = "blocked"
        update["reason"] = f"verifier: {reason}"
        if not state.get("first_warning_at"):
            update["first_warning_at"] = ctx.clock()
    return update

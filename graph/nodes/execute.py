"""execute: the only node that runs tools, and so the only one that mutates.

A mutation runs only after the gate and the verifier passed it (and a human approved it when
the gate held it), only while no kill switch is set, and through the idempotency ledger, so a
retry, a resume or a replay never applies it twice. Inside the ledger's transaction the
invariants and the tier rules run again against the database as it is then
(graph.commit_checks); one that fails there blocks the run and nothing commits. Transient
tool failures are retried with backoff within the policy's retry budget. Tool latency is
measured apart from model latency.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from langgraph.runtime import Runtime
from pydantic import ValidationError

from graph.commit_checks import COMMIT_PREFIX, commit_checks
from graph.context import RunContext
from graph.evidence import Evidence, Refusal, evidence_key
from graph.state import AgentState, Proposal, RuleCheck, usage_delta
from tools.base import ToolError, TransientToolError, UnconfirmedEffect, validation_summary
from tools.ledger import (
    CommitRefused,
    call_digest,
    commit_external,
    commit_once,
    idempotency_key,
)


def _authorized(state: AgentState, proposal: Proposal) -> str | None:
    """Why a mutation may not run now, or None. A second line of defence behind the routing:
    it also catches a call changed after it was judged (e.g. a fork via update_state)."""
    gate, verdict, approval = state.get("gate"), state.get("verdict"), state.get("approval")
    if gate is None or gate["route"] != "verify":
        return "mutation without a passing gate decision"
    if verdict is None or not verdict["ok"]:
        return "mutation without a passing verifier verdict"
    digest = call_digest(proposal["tool"], proposal["args"])
    if gate.get("call_digest") != digest or verdict.get("call_digest") != digest:
        return "the call changed after the gate and the verifier judged it"
    if gate["tier"] == "yellow" and (approval is None or approval["action"] == "reject"):
        return "held mutation without a human approval"
    return None


def execute(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    proposal = state.get("proposal")
    assert proposal is not None and proposal["args"] is not None
    run_id, step, tool = state["run_id"], state["step"], proposal["tool"]
    kill = ctx.runs.kill_reason(ctx.workflow.name)
    if kill:
        return {"outcome": "blocked", "reason": kill}
    spec = ctx.registry.get(tool)
    if spec is None:
        return {"outcome": "blocked", "reason": f"unknown tool {tool!r}"}
    try:
        parsed = spec.parse_args(proposal["args"])
    except ValidationError as exc:
        return {"outcome": "blocked", "reason": f"invalid arguments: {validation_summary(exc)}"}
    args = parsed.model_dump(mode="json")
    if spec.mutates:
        refusal = _authorized(state, proposal)
        if refusal:
            return {"outcome": "blocked", "reason": refusal}

    key = idempotency_key(run_id, step, tool, args)
    tool_ctx = ctx.tool_ctx(state["ticket"])
    if spec.mutates:  # the tool forwards it to any system its effect lands in
        tool_ctx = dataclasses.replace(tool_ctx, idempotency_key=key)
    external = spec.external(tool_ctx, parsed) if spec.mutates and spec.external else None
    budget = ctx.policy.budgets.retries if ctx.policy else 0
    retries_left = max(0, budget - state["usage"]["retries"])
    attempts, result, error, replayed, exhausted = 0, None, None, False, False
    business: str | None = None
    checked: list[RuleCheck] = []
    refused: CommitRefused | None = None
    unconfirmed: UnconfirmedEffect | None = None
    # Crash-test seams (checkpoints.faults): kill points just before and just after COMMIT.
    before_hook = getattr(ctx.faults, "before_commit", None)
    after_hook = getattr(ctx.faults, "after_commit", None)
    external_hook = getattr(ctx.faults, "external_point", None)

    def point(where: str) -> None:  # the seams inside an external effect (checkpoints.faults)
        if where == "before_commit" and before_hook is not None:
            before_hook(run_id, step, tool)
        elif where != "before_commit" and external_hook is not None:
            external_hook(run_id, step, tool, where)
    started = time.perf_counter()
    while True:
        try:
            if external is not None:
                outcome = commit_external(
                    ctx.db, key=key, run_id=run_id, step=step, tool=tool, args=args,
                    call=external, clock=ctx.clock, point=point,
                    checks=commit_checks(ctx, state, tool, parsed, args, checked),
                    tenant_id=tool_ctx.tenant_id, customer_id=tool_ctx.customer_id)
                result, replayed = outcome.result, outcome.replayed
                if after_hook is not None:
                    after_hook(run_id, step, tool)
            elif spec.mutates:
                outcome = commit_once(
                    ctx.db, key=key, run_id=run_id, step=step, tool=tool, args=args,
                    apply=lambda: spec.run(tool_ctx, parsed), clock=ctx.clock,
                    before_commit=(lambda: before_hook(run_id, step, tool))
                    if before_hook else None,
                    checks=commit_checks(ctx, state, tool, parsed, args, checked),
                    tenant_id=tool_ctx.tenant_id, customer_id=tool_ctx.customer_id)
                result, replayed = outcome.result, outcome.replayed
                if after_hook is not None:
                    after_hook(run_id, step, tool)
            else:
                result = spec.run(tool_ctx, parsed).model_dump(mode="json")
            break
        except TransientToolError as exc:
            if attempts >= retries_left:
                error = f"{tool} kept failing after {attempts} retries: {exc}"
                exhausted = True
                break
            ctx.sleep(ctx.retry_backoff_s * (2 ** attempts))
            attempts += 1
        except UnconfirmedEffect as exc:
            unconfirmed = exc
            break
        except ToolError as exc:
            error = business = str(exc)
            break
        except CommitRefused as exc:
            refused = exc
            break
    latency = time.perf_counter() - started
    if checked and ctx.recorder is not None:
        for c in checked:
            ctx.recorder.decision(run_id, f"verify_commit:{key}:{c['rule_id']}", step=step,
                                  kind="verify_commit", verdict="pass" if c["ok"] else "fail",
                                  rule_id=c["rule_id"], reason=c["reason"])
    if unconfirmed is not None:
        # Fail closed: the external system may hold an effect the ledger cannot vouch for.
        return {"outcome": "blocked", "commit_checks": checked,
                "reason": f"{tool}: unconfirmed external effect: {unconfirmed}",
                "first_warning_at": state.get("first_warning_at") or ctx.clock()}
    if refused is not None:
        return {"outcome": "blocked", "commit_checks": checked,
                "reason": f"{COMMIT_PREFIX}: {refused.rule_id}: {refused.reason}",
                "first_warning_at": state.get("first_warning_at") or ctx.clock()}

    valid = True
    if result is not None:
        try:
            spec.output_model.model_validate(result)
        except ValidationError:
            valid, error, result = False, f"{tool} returned an unexpected shape", None
    if ctx.recorder is not None:
        ctx.recorder.tool_call(run_id, f"tool:{key}", step=step, tool=tool, args=args,
                               result=result, error=error, schema_valid=True,
                               ok=error is None and valid, latency_s=latency,
                               mutation=spec.mutates and not replayed and error is None)
    entry = Evidence(tool=tool, args=args, result=result, error=error, step=step)
    if business is not None:
        entry["refusal"] = Refusal(by="tool", rule_id=tool, reason=business)
    update: dict[str, Any] = {
        "evidence": {evidence_key(step, tool): entry},
        "last_call": entry,
        "usage": usage_delta(tool_calls=1, retries=attempts),
    }
    if checked:
        update["commit_checks"] = checked
    if spec.mutates and error is None:
        update["mutations"] = state.get("mutations", 0) + 1
    if exhausted or not valid:
        update["outcome"] = "failed"
        update["reason"] = error
    return update

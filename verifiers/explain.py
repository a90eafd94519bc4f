"""`policy explain`: how every proposal of a run was decided, rebuilt from its checkpoints.

The run's checkpoint history is the record: each checkpoint holds the writes of the node that
ran from it, so walking the chain from the latest checkpoint back to the first and replaying
those writes in order shows, per proposal, the gate's tier, rule and reason, each invariant's
verdict, the second model's verdict, every human decision with the approver's identity, role
and policy version, what executed, the post-check, and how the run ended. Nothing is re-run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import StateSnapshot

from verifiers.policy import Policy

Kind = Literal["gate", "invariant", "model_check", "approval", "waiting", "commit_check",
               "execute", "postcheck", "stop", "replan"]


@dataclass(frozen=True)
class Finding:
    """One verdict on a proposal, in the order it was reached."""

    kind: Kind
    verdict: str
    """gate: green/yellow/red; checks: pass/fail; approval: approve/reject/edit/refused;
    commit_check (verify at commit, inside the ledger's transaction): pass/fail;
    execute: ok/error/blocked; postcheck: pass/fail; stop: the run's outcome."""
    rule_id: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Extra facts: the gate's route and policy version, the approver's role, ..."""


@dataclass
class StepExplanation:
    """One proposal (a planner step) and everything that decided its fate."""

    step: int
    tool: str
    args: dict[str, Any] | None
    origin: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def decision(self) -> str:
        """One line: what happened to the proposal and which rule or person decided it."""
        gates = [f for f in self.findings if f.kind == "gate"]
        approvals = [f for f in self.findings if f.kind == "approval"]
        failed = [f for f in self.findings if f.kind in ("invariant", "model_check")
                  and f.verdict == "fail"]
        refused = [f for f in self.findings if f.kind == "commit_check" and f.verdict == "fail"]
        executed = [f for f in self.findings if f.kind == "execute"]
        last_gate = gates[-1] if gates else None
        by_gate = f"gate rule {last_gate.rule_id}" if last_gate else "no gate decision"
        if last_gate is not None and last_gate.detail.get("route") == "block":
            replanned = " and handed to the planner" if any(
                f.kind == "replan" for f in self.findings) else ""
            return (f"blocked by {by_gate} (policy {last_gate.detail.get('policy_version')})"
                    f"{replanned}")
        if failed:
            return "blocked by the verifier: " + ", ".join(f.rule_id for f in failed)
        if approvals and approvals[-1].verdict == "reject":
            a = approvals[-1]
            return f"rejected by {a.detail.get('by')} ({a.detail.get('role')})"
        if approvals and approvals[-1].verdict == "refused":
            return approvals[-1].reason
        if self.findings and self.findings[-1].kind == "waiting":
            return f"held by {by_gate}; waiting for a human decision"
        if refused:
            return f"blocked at commit by {refused[0].rule_id} (nothing committed)"
        if executed:
            ran = executed[-1]
            if ran.verdict == "blocked":
                return f"stopped in execute: {ran.reason}"
            how = f"allowed by {by_gate}"
            approved = [a for a in approvals if a.verdict in ("approve", "confirm")]
            if approved:
                a = approved[-1]
                how += (f", approved by {a.detail.get('by')} ({a.detail.get('role')}, "
                        f"policy {a.detail.get('policy_version')})")
            return f"executed ({ran.verdict}): {how}"
        return f"not executed ({by_gate})"


@dataclass
class RunExplanation:
    """A run's proposals in order, and how the run ended."""

    run_id: str
    steps: list[StepExplanation]
    outcome: str | None
    """The run's outcome, or None while it waits or runs."""
    reason: str | None
    waiting: bool
    """True when the run is paused for a human decision."""
    checkpoints: int
    stops: list[Finding] = field(default_factory=list)
    """How the run ended: the node that ended it (fallback, finish, or a planner failure)."""


def _chain(snapshots: Iterable[StateSnapshot]) -> list[StateSnapshot]:
    """The checkpoints leading to the latest one, oldest first (forks are left out)."""
    by_id: dict[str, StateSnapshot] = {}
    latest: StateSnapshot | None = None
    for snapshot in snapshots:  # newest first
        by_id[snapshot.config["configurable"]["checkpoint_id"]] = snapshot
        latest = latest or snapshot
    chain: list[StateSnapshot] = []
    current = latest
    while current is not None:
        chain.append(current)
        parent = current.parent_config
        current = by_id.get(parent["configurable"]["checkpoint_id"]) if parent else None
    return list(reversed(chain))


def _writes(chain: list[StateSnapshot]) -> Iterator[tuple[str, dict[str, Any] | None, bool]]:
    """(node, its writes or None if it has not finished, whether it is interrupted)."""
    for snapshot in chain:
        for task in snapshot.tasks:
            if task.name.startswith("__"):
                continue
            yield task.name, task.result, bool(task.interrupts)


def explain_history(run_id: str, snapshots: Iterable[StateSnapshot],
                    policy: Policy | None = None) -> RunExplanation:
    """Replay a run's checkpoint history into an explanation. `policy`, when given, annotates
    each gate decision made under it (same digest) with the deciding rule's line and
    condition."""
    chain = _chain(snapshots)
    steps: list[StepExplanation] = []
    stops: list[Finding] = []

    def current() -> StepExplanation | None:
        return steps[-1] if steps else None

    def note(finding: Finding) -> None:
        step = current()
        if step is not None:
            step.findings.append(finding)

    waiting = False
    for node, writes, interrupted in _writes(chain):
        if writes is None:
            if node == "approve" and interrupted:
                waiting = True
                note(Finding("waiting", "pending", "approval", "waiting for a human decision"))
            continue
        waiting = False
        if node == "plan" and writes.get("proposal"):
            p = writes["proposal"]
            steps.append(StepExplanation(step=writes.get("step", len(steps) + 1),
                                         tool=p["tool"], args=p["args"], origin=p["origin"]))
        elif node == "gate" and writes.get("gate"):
            note(_gate_finding(writes["gate"], policy))
            if writes.get("refusals"):
                note(Finding("replan", "refused", writes["gate"]["rule_id"],
                             f"handed to the planner as an observation (refusal "
                             f"{writes['refusals']}); the run goes on"))
        elif node == "verify" and writes.get("verdict"):
            verdict = writes["verdict"]
            for check in verdict["invariants"]:
                note(Finding("invariant", "pass" if check["ok"] else "fail", check["rule_id"],
                             check["reason"]))
            check = verdict["model_check"]
            note(Finding("model_check", "pass" if check["ok"] else "fail", check["rule_id"],
                         check["reason"]))
        elif node == "approve" and writes.get("approval"):
            note(_approval_finding(writes["approval"], writes.get("proposal")))
            step = current()
            if step is not None and writes.get("proposal"):
                step.args, step.origin = writes["proposal"]["args"], "human_edit"
        elif node == "approve" and writes.get("outcome"):
            note(Finding("approval", "refused", "approval", writes.get("reason") or ""))
        if node == "execute":
            for check in writes.get("commit_checks") or ():
                note(Finding("commit_check", "pass" if check["ok"] else "fail",
                             check["rule_id"], check["reason"]))
        if node == "execute" and writes.get("last_call"):
            call = writes["last_call"]
            note(Finding("execute", "error" if call["error"] else "ok", call["tool"],
                         call["error"] or _result_summary(call["result"]),
                         {"args": call["args"]}))
        elif node == "execute" and writes.get("outcome"):
            note(Finding("execute", "blocked", "execute", writes.get("reason") or ""))
        elif node == "postcheck":
            if writes.get("outcome"):
                note(Finding("postcheck", "fail", "postcheck", writes.get("reason") or ""))
            else:
                note(Finding("postcheck", "pass", "postcheck", "all post-conditions hold"))
        elif node == "plan" and writes.get("outcome"):
            stops.append(Finding("stop", writes["outcome"], "plan", writes.get("reason") or ""))
        if node in ("fallback", "finish") and writes.get("outcome"):
            stops.append(Finding("stop", writes["outcome"], node, writes.get("reason") or ""))

    values = chain[-1].values if chain else {}
    return RunExplanation(run_id=run_id, steps=steps, outcome=values.get("outcome"),
                          reason=values.get("reason"), waiting=waiting, checkpoints=len(chain),
                          stops=stops)


def explain_run(saver: BaseCheckpointSaver[Any], run_id: str,
                policy: Policy | None = None) -> RunExplanation:
    """Explain a run from its checkpoints in `saver` (the runner's, on any backend)."""
    # Imported here: the graph imports the verifiers, not the other way round.
    from checkpoints.saver import thread_config
    from graph.factory import build_graph

    graph = build_graph().compile(checkpointer=saver)
    history = list(graph.get_state_history(thread_config(run_id)))  # type: ignore[arg-type]
    return explain_history(run_id, history, policy)


def _gate_finding(gate: dict[str, Any], policy: Policy | None) -> Finding:
    detail: dict[str, Any] = {"route": gate["route"], "policy_version": gate["policy_version"]}
    if gate.get("errors"):
        detail["errors"] = gate["errors"]
    if gate.get("aggregates"):
        detail["aggregates"] = gate["aggregates"]
    rule = policy.rule(gate["rule_id"]) if policy is not None else None
    if rule is not None and policy is not None and gate.get("policy_digest") == policy.digest:
        detail["rule_line"] = rule.line
        detail["source"] = policy.source
        if rule.condition is not None:
            detail["when"] = rule.condition.source
    return Finding("gate", gate["tier"], gate["rule_id"], gate["reason"], detail)


def _approval_finding(approval: dict[str, Any], edited: dict[str, Any] | None) -> Finding:
    detail: dict[str, Any] = {"by": approval["by"], "role": approval["role"],
                              "policy_version": approval["policy_version"]}
    if edited is not None:
        detail["args"] = edited["args"]
    return Finding("approval", approval["action"], f"role:{approval['role']}",
                   approval["reason"] or approval["action"], detail)


def _result_summary(result: dict[str, Any] | None) -> str:
    if not result:
        return "no result"
    ids = {k: v for k, v in result.items() if k.endswith("_id") or k in ("status",
                                                                          "amount_cents")}
    return json.dumps(ids or {"keys": sorted(result)}, sort_keys=True)


def render(explanation: RunExplanation, header: Iterable[str] = ()) -> list[str]:
    """Plain-text lines for `signoff policy explain`."""
    lines = list(header)
    if not explanation.steps and explanation.checkpoints == 0:
        lines.append("no checkpoints: the run never reached its first step, or its "
                     "checkpoints were pruned")
    for step in explanation.steps:
        args = json.dumps(step.args, sort_keys=True) if step.args is not None else "(not JSON)"
        origin = "a human edit" if step.origin == "human_edit" else "the model"
        lines.append("")
        lines.append(f"step {step.step}: {step.tool} {args}  (proposed by {origin})")
        for f in step.findings:
            lines.extend(_render_finding(f))
        lines.append(f"  => {step.decision}")
    lines.append("")
    for f in explanation.stops[:-1]:
        lines.append(f"{f.rule_id}: {f.verdict} - {f.reason}")
    if explanation.waiting:
        lines.append("outcome: waiting for a human decision")
    else:
        ended = f" (ended by {explanation.stops[-1].rule_id})" if explanation.stops else ""
        lines.append(f"outcome: {explanation.outcome or 'unfinished'}{ended} - "
                     f"{explanation.reason or ''}".rstrip(" -"))
    return lines


def _render_finding(f: Finding) -> list[str]:
    d = f.detail
    if f.kind == "gate":
        where = ""
        if d.get("rule_line"):
            where = f" [{Path(d['source']).name}:{d['rule_line']}"
            where += f" when {d['when']}]" if d.get("when") else "]"
        out = [f"  gate        {f.verdict:<7} rule {f.rule_id}{where} "
               f"(policy {d['policy_version']}) -> {d['route']}",
               f"              {f.reason}"]
        out += [f"              schema: {e}" for e in d.get("errors", [])]
        out += [f"              aggregate {name} = {value}"
                for name, value in d.get("aggregates", {}).items()]
        return out
    if f.kind in ("invariant", "model_check"):
        label = "invariant" if f.kind == "invariant" else "model check"
        return [f"  {label:<11} {f.verdict:<7} {f.rule_id}: {f.reason}"]
    if f.kind == "approval" and f.verdict == "refused":
        return [f"  approval    refused {f.reason}"]
    if f.kind == "approval":
        out = [f"  approval    {f.verdict:<7} by {d['by']} (role {d['role']}, policy "
               f"{d['policy_version']}): {f.reason}"]
        if "args" in d:
            out.append(f"              edited arguments: {json.dumps(d['args'], sort_keys=True)}")
        return out
    if f.kind == "waiting":
        return ["  approval    pending waiting for a human decision"]
    if f.kind == "replan":
        return [f"  replan      {f.verdict:<7} {f.reason}"]
    if f.kind == "commit_check":
        return [f"  at commit   {f.verdict:<7} {f.rule_id}: {f.reason}"]
    if f.kind == "execute":
        return [f"  execute     {f.verdict:<7} {f.reason}"]
    if f.kind == "postcheck":
        return [f"  postcheck   {f.verdict:<7} {f.reason}"]
    return [f"  {f.kind:<11} {f.verdict:<7} {f.rule_id}: {f.reason}"]

"""Operator actions both edges (the CLI and the service) call: the kill switch and a run's
explanation. Each takes the runner, so neither edge holds logic the other lacks."""

from __future__ import annotations

from checkpoints.runs import ALL_WORKFLOWS
from graph.errors import SignoffError
from graph.identity import BadIdentity
from graph.runner import Runner
from graph.workflows import get_workflow
from verifiers.explain import explain_run, render


def kill_scope(workflow: str | None, all_workflows: bool) -> str:
    """The kill switch's scope: one registered workflow, or every workflow."""
    if all_workflows == (workflow is not None):
        raise SignoffError("give exactly one of a workflow or all workflows")
    if workflow is not None:
        get_workflow(workflow)  # unknown names are an error, not a silent no-op
        return workflow
    return ALL_WORKFLOWS


def scope_name(scope: str) -> str:
    return "all workflows" if scope == ALL_WORKFLOWS else f"workflow {scope}"


def set_kill(runner: Runner, scope: str, *, by: str, reason: str) -> None:
    """Set the kill switch for `scope`: runs in flight stop at their next gate."""
    if not reason.strip():
        raise SignoffError("a kill switch needs a reason")
    try:
        runner.runs.set_kill(scope, by=by, reason=reason)
    except BadIdentity as exc:
        raise SignoffError(f"invalid identity: {exc}") from None


def clear_kill(runner: Runner, scope: str) -> None:
    if not runner.runs.clear_kill(scope):
        raise SignoffError(f"no kill switch is set for {scope_name(scope)}")


def explain_lines(runner: Runner, run_id: str) -> list[str]:
    """`policy explain` for one run: a header, then which rule decided each proposal and why.
    Raises DamagedData for a waiting run whose checkpoints are gone."""
    record = runner.runs.get(run_id)  # unknown id -> one-line error
    workflow = get_workflow(record.workflow)
    policy, _ = runner.load_policy(workflow)
    if record.status == "waiting_approval":
        runner.require_checkpoints(run_id)
    with runner.checkpointer() as saver:
        explanation = explain_run(saver, run_id, policy)
    header = [f"run {record.run_id}: workflow {record.workflow} {record.workflow_version}, "
              f"ticket {record.ticket_id}, tenant {record.tenant_id}, "
              f"started by {record.requester}",
              f"policy when it started: {record.policy_version or 'none (invalid or missing)'}"
              f"; in force now: {policy.version if policy else 'none (invalid or missing)'}",
              f"status: {record.status}"]
    if explanation.checkpoints == 0 and record.terminal:
        # The registry keeps how it ended; only the step-by-step record is gone.
        return [*header,
                "its checkpoints were pruned (`signoff prune`), so its steps cannot be "
                "shown; its traces and audit entries are kept (`signoff traces --run "
                f"{record.run_id}`)",
                f"outcome: {record.status} - {record.reason or ''}".rstrip(" -")]
    return render(explanation, header)

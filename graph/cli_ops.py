"""Operator commands: kill switch, policy check and explain."""

from __future__ import annotations

import typer

from checkpoints.runs import ALL_WORKFLOWS
from graph.cli import app, home, make_runner, out, requester_default, user_errors
from graph.errors import SignoffError
from graph.workflows import get_workflow, workflow_names
from observability.cli import register as register_observability
from verifiers.policy import PolicyError, load_policy

policy_app = typer.Typer(no_args_is_help=True, help="Check and explain policies.")
app.add_typer(policy_app, name="policy")
register_observability(app, lambda: home().root)


def _scope(workflow: str | None, all_workflows: bool) -> str:
    if all_workflows == (workflow is not None):
        raise SignoffError("give exactly one of --workflow NAME or --all")
    if workflow is not None:
        get_workflow(workflow)  # unknown names are an error, not a silent no-op
        return workflow
    return ALL_WORKFLOWS


@app.command()
@user_errors
def kill(workflow: str = typer.Option(None, "--workflow", help="Stop this workflow."),
         all_workflows: bool = typer.Option(False, "--all", help="Stop every workflow."),
         reason: str = typer.Option("stopped by an operator", "--reason"),
         as_user: str = typer.Option(None, "--as", help="Who sets it (SIGNOFF_USER).")) -> None:
    """Set a kill switch: runs in flight stop at their next gate, and no mutation runs after it,
    even for a run approved later.

    Example: signoff kill --workflow support --reason "refund bug, investigating"
    """
    scope = _scope(workflow, all_workflows)
    make_runner().runs.set_kill(scope, by=as_user or requester_default(), reason=reason)
    what = "all workflows" if scope == ALL_WORKFLOWS else f"workflow {scope}"
    out.print(f"kill switch set for {what}: {reason}")


@app.command()
@user_errors
def unkill(workflow: str = typer.Option(None, "--workflow"),
           all_workflows: bool = typer.Option(False, "--all")) -> None:
    """Clear a kill switch set with `signoff kill`.

    Example: signoff unkill --workflow support
    """
    scope = _scope(workflow, all_workflows)
    if not make_runner().runs.clear_kill(scope):
        raise SignoffError(f"no kill switch is set for {scope if scope != '*' else '--all'}")
    out.print(f"kill switch cleared for {'all workflows' if scope == '*' else scope}")


@policy_app.command("check")
@user_errors
def policy_check(file: str = typer.Argument(..., help="Path to a policy TOML file."),
                 workflow: str = typer.Option(None, "--workflow",
                                              help="Check tool names against this workflow "
                                                   "(default: the file's workflow).")) -> None:
    """Validate a policy file; errors name their line.

    Example: signoff policy check verifiers/policies/support.toml
    """
    try:
        policy = load_policy(file)
        name = workflow or policy.workflow
        known = set(get_workflow(name).tools().names()) if name in workflow_names() else None
        if known is not None:
            policy = load_policy(file, known_tools=known)
    except PolicyError as exc:
        raise SignoffError(str(exc)) from None
    out.print(f"{file}: ok - workflow {policy.workflow}, version {policy.version}, "
              f"{len(policy.rules)} rules, {len(policy.allowed_tools)} tools allowed")

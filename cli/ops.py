"""Operator commands: kill switch, policy check and explain, and the commands of the
checkpoints (prune), observability (traces, report, audit) and evals (eval, gate) packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import typer

from cli.checkpoints import register as register_checkpoints
from cli.errors import read_only
from cli.evals import register as register_evals
from cli.main import GuardedTyper, app, home, make_runner, out, requester_default
from cli.observability import register as register_observability
from graph.errors import SignoffError

# The workflows, policies and explanations load when a command runs, not for --help.

policy_app = GuardedTyper(no_args_is_help=True, help="Check and explain policies.")
app.add_typer(policy_app, name="policy")
register_observability(app, home)
register_checkpoints(app, home)
register_evals(app, home)


def _scope(workflow: str | None, all_workflows: bool) -> str:
    from graph.control import kill_scope

    if all_workflows == (workflow is not None):
        raise SignoffError("give exactly one of --workflow NAME or --all")
    return kill_scope(workflow, all_workflows)


@app.command()
def kill(workflow: str = typer.Option(None, "--workflow", help="Stop this workflow."),
         all_workflows: bool = typer.Option(False, "--all", help="Stop every workflow."),
         reason: str = typer.Option("stopped by an operator", "--reason"),
         as_user: str = typer.Option(None, "--as", help="Who sets it (SIGNOFF_USER).")) -> None:
    """Set a kill switch: runs in flight stop at their next gate, and no mutation runs after it,
    even for a run approved later.

    Example: signoff kill --workflow support --reason "refund bug, investigating"
    """
    from graph.control import scope_name, set_kill

    scope = _scope(workflow, all_workflows)
    set_kill(make_runner(), scope, by=as_user or requester_default(), reason=reason)
    out.print(f"kill switch set for {scope_name(scope)}: {reason}")


@app.command()
def unkill(workflow: str = typer.Option(None, "--workflow"),
           all_workflows: bool = typer.Option(False, "--all")) -> None:
    """Clear a kill switch set with `signoff kill`.

    Example: signoff unkill --workflow support
    """
    scope = _scope(workflow, all_workflows)
    if not make_runner().runs.clear_kill(scope):
        raise SignoffError(f"no kill switch is set for {scope if scope != '*' else '--all'}")
    out.print(f"kill switch cleared for {'all workflows' if scope == '*' else scope}")


def _workflow_named_in(file: str) -> str | None:
    """The file's `workflow` key, or None when it cannot be read (load_policy says why)."""
    try:
        name = tomllib.loads(Path(file).read_text(encoding="utf-8")).get("workflow")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return name if isinstance(name, str) else None


@policy_app.command("check")
def policy_check(file: str = typer.Argument(..., help="Path to a policy TOML file."),
                 workflow: str = typer.Option(None, "--workflow",
                                              help="Check tool names against this workflow "
                                                   "(default: the file's workflow).")) -> None:
    """Validate a policy file; every error is printed as FILE:LINE: message.

    Example: signoff policy check verifiers/policies/support.toml
    """
    from graph.workflows import get_workflow, workflow_names
    from verifiers.policy import PolicyError, load_policy

    if workflow is not None:
        get_workflow(workflow)  # an unknown name is an error, not a skipped check
    try:
        # The workflow the file names, read first so that every error (tool and argument
        # names included) is reported in one pass.
        name = workflow or _workflow_named_in(file) or load_policy(file).workflow
        checks = get_workflow(name).policy_checks() if name in workflow_names() else {}
        known = checks.get("known_tools")
        policy = load_policy(file, **checks)
    except PolicyError as exc:
        for issue in exc.issues:
            typer.echo(f"error: {exc.format(issue)}", err=True)
        raise typer.Exit(1) from None
    checked = f"tools checked against workflow {name}" if known is not None else \
        f"workflow {name} is not registered, tool names not checked"
    typer.echo(f"{file}: ok - workflow {policy.workflow}, version {policy.version}, "
               f"{len(policy.rules)} rules, {len(policy.allowed_tools)} tools allowed "
               f"({checked})")


@policy_app.command("explain")
@read_only
def policy_explain(run_id: str = typer.Argument(..., help="The run id.")) -> None:
    """Show, step by step, which rule decided each proposal of a run and why: the gate's tier,
    rule and reason, every invariant, the second model's verdict, human decisions (identity,
    role, policy version) and the outcome. Read from the run's checkpoints.

    Example: signoff policy explain run-0123456789
    """
    from graph.control import explain_lines

    for line in explain_lines(make_runner(), run_id):
        typer.echo(line)

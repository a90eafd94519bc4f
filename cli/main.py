"""`signoff`: a thin CLI over the runner. Each command calls library code; `guarded` turns
whatever it raises into one `error:` line and an exit code of cli.errors, never a traceback.

Environment is read here, once: SIGNOFF_HOME (data directory, default ./.signoff),
SIGNOFF_USER (who starts runs), SIGNOFF_PLANNER_* and SIGNOFF_CHECKER_* (models),
SIGNOFF_DATABASE_URL, SIGNOFF_DB_SCHEMA_PREFIX and SIGNOFF_DB_POOL_SIZE (the PostgreSQL backend,
checkpoints.backend),
SIGNOFF_WORKFLOWS (plugin workflows as module:attribute, loaded when a workflow is looked up).
"""

from __future__ import annotations

import atexit
import functools
import getpass
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from checkpoints.runs import TERMINAL, RunRecord, holder_is_dead
from cli.errors import DAMAGED, INTERNAL, REFUSED, USAGE, BadUsage, read_only
from cli.remote import remote_from_env
from graph.errors import BadDecision, DamagedData, SignoffError

if TYPE_CHECKING:  # the graph, its models and stores load when a command runs, not for --help
    from graph.context import SampleTicket
    from graph.runner import Home, Runner, RunResult
    from verifiers.policy import Policy

# Piped output (CI logs, README captures) gets a fixed, readable width instead of rich's 80.
# markup=False: a subject, reason or argument holding `[/]` is text, never rich markup; the
# few styled words are built as Text below.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 120)
F = TypeVar("F", bound=Callable[..., Any])

DEMO_REQUESTER = "demo-operator@signoff.local"
RUN_ID_WIDTH = len("run-0123456789")
"""A run id's length: its column never gets narrower, so an id is never cut."""
SHADOW_STATUS = "recommended"
"""graph.runner.SHADOW_STATUS, named here so that `--help` needs no graph (a test pins both)."""
QUEUED_STATUS = "queued"
"""graph.runner.QUEUED_STATUS, likewise."""
RUN_STATUSES = ("running", "waiting_approval", QUEUED_STATUS, *sorted(TERMINAL), SHADOW_STATUS)
"""Every status a run can have, for `signoff runs --status`."""


def fail(message: str, code: int = REFUSED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_runners: list[Runner] = []
"""Runners a command opened; closed when it returns, so its stores are flushed and released."""


def _close_runners() -> None:
    """Close every runner a command opened, then raise the first error closing one gave."""
    errors: list[Exception] = []
    while _runners:
        try:
            _runners.pop().close()
        except Exception as exc:  # noqa: BLE001 - raised below once the rest are closed
            errors.append(exc)
    if errors:
        raise errors[0]


def _exit_code_of(exc: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for an exception a command raised."""
    if isinstance(exc, BadUsage):
        return USAGE, str(exc)
    if isinstance(exc, DamagedData):
        return DAMAGED, str(exc)
    if isinstance(exc, SignoffError):
        return REFUSED, str(exc)
    from observability.db import StoreError

    if isinstance(exc, sqlite3.DatabaseError | StoreError):
        return DAMAGED, (f"database error: {_first_line(exc)} (is SIGNOFF_HOME signoff's "
                         "data directory, with its files intact?)")
    if type(exc).__module__.startswith("psycopg"):  # the server failed us, not signoff
        return DAMAGED, f"database error: {_first_line(exc)} (SIGNOFF_DATABASE_URL)"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return DAMAGED, f"cannot use{where}: {exc.strerror or _first_line(exc)}"
    return INTERNAL, (f"internal error: {type(exc).__name__}: {_first_line(exc)} (a bug in "
                      "signoff; SIGNOFF_TRACEBACK=1 shows where)")


def guarded(fn: F) -> F:
    """Run a command so that it ends in one of the exit codes of cli.errors: any exception
    becomes one `error:` line, never a traceback; the command's runners are closed either way."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _reading_only.append(bool(getattr(fn, "read_only", False)))
        try:
            try:
                _use_plugin_workflows()
                return fn(*args, **kwargs)
            finally:
                _reading_only.pop()
                _close_runners()  # closing flushes the stores, so it can fail too
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SIGNOFF_TRACEBACK") == "1":
                raise
            code, message = _exit_code_of(exc)
            fail(message, code)
    return wrapper  # type: ignore[return-value]


def _use_plugin_workflows() -> None:
    """Hand SIGNOFF_WORKFLOWS to the workflow registry, which loads it on the first lookup."""
    spec = os.environ.get("SIGNOFF_WORKFLOWS")
    if spec:
        from graph.workflows import use_workflow_specs

        use_workflow_specs(spec)


class GuardedTyper(typer.Typer):
    """A Typer whose every command runs under `guarded`, so no command can forget it."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(guarded(fn))
            return fn
        return decorator


app = GuardedTyper(add_completion=False, no_args_is_help=True,
                   help="signoff: run LLM agents under a policy gate, a verifier and human "
                        "approval, checkpointed to SQLite.")


_reading_only: list[bool] = []
"""Whether the command running now only reads (set by `guarded` from `read_only`)."""
_snapshots: dict[Path, Path] = {}


def _snapshot(root: Path) -> Path:
    """A private copy of a read-only data directory, taken once per process and removed at
    exit. SQLite cannot open a database on a read-only filesystem the way the stores do (WAL
    needs its shared-memory file), so read-only commands read the copy: the same data."""
    if root not in _snapshots:
        copy = Path(tempfile.mkdtemp(prefix="signoff-readonly-")) / "home"
        shutil.copytree(root, copy)
        atexit.register(shutil.rmtree, copy.parent, True)
        _snapshots[root] = copy
        typer.echo(f"note: SIGNOFF_HOME {root} is read-only; reading a copy of it", err=True)
    return _snapshots[root]


def home() -> Home:
    """The data directory SIGNOFF_HOME names; DamagedData when it is there but not a directory,
    or read-only for a command that writes."""
    root = Path(os.environ.get("SIGNOFF_HOME") or ".signoff").expanduser()
    if root.exists() and not root.is_dir():
        raise DamagedData(f"SIGNOFF_HOME {root} is not a directory")
    from graph.runner import Home

    if root.is_dir() and not os.access(root, os.W_OK):
        if not (_reading_only and _reading_only[-1]):
            raise DamagedData(f"SIGNOFF_HOME {root} is read-only and this command writes to it "
                              "(runs, status, report, traces, audit verify, audit head and "
                              "policy explain read a read-only directory)")
        return Home(_snapshot(root), **_database())
    return Home(root, **_database())


def _database() -> dict[str, Any]:
    """SIGNOFF_DATABASE_URL, SIGNOFF_DB_SCHEMA_PREFIX and SIGNOFF_DB_POOL_SIZE, when set
    (Home's defaults else); a pool size that is not a whole number from 1 is a user mistake."""
    settings: dict[str, Any] = {"database_url": os.environ.get("SIGNOFF_DATABASE_URL", ""),
                                "schema_prefix": os.environ.get("SIGNOFF_DB_SCHEMA_PREFIX", "")}
    size = os.environ.get("SIGNOFF_DB_POOL_SIZE", "").strip()
    if size:
        if not size.isdigit() or int(size) < 1:
            raise SignoffError(f"SIGNOFF_DB_POOL_SIZE must be a whole number from 1, not {size!r}")
        settings["pool_size"] = int(size)
    return {key: value for key, value in settings.items() if value}


def requester_default() -> str:
    return os.environ.get("SIGNOFF_USER") or f"{getpass.getuser()}@local"


def make_runner() -> Runner:
    runner = build_runner(home())
    _runners.append(runner)
    return runner


def build_runner(data: Home) -> Runner:
    """A runner on `data` with the models, recorder and prices the environment names."""
    from graph.models import ModelSettings
    from graph.runner import Runner

    env = dict(os.environ)
    try:
        planner = ModelSettings.from_env("planner", env)
        checker = ModelSettings.from_env("checker", env)
    except ValueError as exc:
        raise SignoffError(str(exc)) from None
    from graph.observe import recorder_factory

    return Runner(data, planner_settings=planner, checker_settings=checker,
                  recorder_factory=recorder_factory())


def command_name() -> str:
    """How the user invoked signoff, so printed follow-up commands can be pasted as they are."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "signoff" and argv0.parent != Path("."):
        try:
            return str(argv0.resolve().relative_to(Path.cwd()))
        except ValueError:
            return "signoff"
    return "signoff"


def print_result(result: RunResult) -> None:
    colour = {"resolved": "green", "waiting_approval": "yellow",
              QUEUED_STATUS: "cyan"}.get(result.status, "red")
    out.print(Text.assemble(f"run {result.run_id}: ", (result.status, colour),
                            f" ({result.mutations} mutation(s)) - {result.reason or ''}"))
    if result.status == "waiting_approval" and result.pending:
        proposal = result.pending.get("proposal") or {}
        # soft_wrap: the JSON is printed whole on one line, to copy as it is.
        out.print(f"  held: {proposal.get('tool')} {json.dumps(proposal.get('args'))}",
                  soft_wrap=True)
        from verifiers.policy import CUSTOMER_APPROVER
        roles = (result.pending.get("gate") or {}).get("approver_roles") or []
        if CUSTOMER_APPROVER in roles:
            out.print(f"  confirm (the run's customer): {command_name()} confirm "
                      f"{result.run_id} --as CUSTOMER")
        if any(role != CUSTOMER_APPROVER for role in roles) or not roles:
            out.print(f"  approve: {command_name()} approve {result.run_id} --as APPROVER "
                      "--reason \"...\"")
    for warning in result.warnings:  # the outcome above stands; this went wrong beside it
        typer.echo(f"warning: {warning}", err=True)


def _demo_approver(policy: Policy | None, record: RunRecord, tenant_id: str) -> str:
    """The first approver in the policy (one of the ticket's tenant first) allowed to decide
    on this run, for the printed approve command."""
    from graph.approvals import check_decision

    if policy is None:
        return "APPROVER"
    ordered = policy.members()
    held_gate = (record.pending or {}).get("gate") or {}
    for member in ordered:
        try:
            check_decision({"action": "approve", "by": member}, requester=record.requester,
                           policy=policy, tenant_id=tenant_id,
                           requester_role=record.requester_role,
                           required_roles=held_gate.get("approver_roles"))
        except BadDecision:
            continue
        return member
    return "APPROVER"


@app.command()
def demo(workflow: str = typer.Option("support", help="Workflow whose sample tickets to run."),
         ) -> None:
    """Reset the sample data and run every sample ticket; print a table of outcomes.

    Example: signoff demo
    """
    from graph.workflows import get_workflow

    wf = get_workflow(workflow)
    runner = make_runner()
    runner.ensure_domain_db(wf, reset=True)
    out.print(Text.assemble("signoff demo: workflow ", (wf.name, "bold"),
                            f" {wf.version}, data in {runner.home.root} (sample database reset)"))
    table = Table(show_lines=False)
    for column in ("ticket", "tenant", "outcome", "mutations", "run"):
        table.add_column(column, no_wrap=True,
                         min_width=RUN_ID_WIDTH if column == "run" else None)
    table.add_column("why", overflow="fold")
    waiting: list[tuple[RunResult, SampleTicket]] = []
    for ticket in wf.sample_tickets():
        result = runner.start(wf.name, ticket, requester=DEMO_REQUESTER)
        colour = {"resolved": "green", "waiting_approval": "yellow"}.get(result.status, "red")
        table.add_row(ticket.ticket_id, ticket.tenant_id, Text(result.status, style=colour),
                      str(result.mutations), result.run_id, result.reason or "")
        if result.status == "waiting_approval":
            waiting.append((result, ticket))
    out.print(table)
    policy, _ = runner.load_policy(wf)
    for result, ticket in waiting:
        approver = _demo_approver(policy, runner.runs.get(result.run_id), ticket.tenant_id)
        out.print(f"{ticket.ticket_id} is waiting for a human decision. Approve it with:")
        out.print(f"  {command_name()} approve {result.run_id} --as {approver} "
                  "--reason \"receipt checked\"")


@app.command()
def run(ticket: str = typer.Argument(None, help="A sample ticket id, e.g. TKT-1001."),
        text: str = typer.Option(None, "--text", help="Run on this ticket text instead."),
        text_file: str = typer.Option(None, "--text-file", metavar="FILE|-",
                                      help="Run on the ticket text in FILE (- reads standard "
                                           "input)."),
        email: str = typer.Option(None, "--email", help="With --text: the customer's email."),
        tenant: str = typer.Option("acme", "--tenant", help="With --text: the tenant."),
        subject: str = typer.Option("Support request", "--subject", help="With --text."),
        workflow: str = typer.Option("support", "--workflow"),
        as_user: str = typer.Option(None, "--as", help="Who starts the run (SIGNOFF_USER)."),
        queue: bool = typer.Option(False, "--queue",
                                   help="Register the run and leave it to a worker (needs "
                                        "SIGNOFF_QUEUE_URL)."),
        ) -> None:
    """Run the agent on one ticket until it ends or waits for a human.

    Example: signoff run TKT-1002   |   signoff run --text-file - --email aiko.tanaka@example.com
    < ticket.txt   |   signoff run TKT-1001 --queue
    """
    queue_url = None
    if queue:
        from cli.queue import ready_queue

        queue_url = ready_queue("--queue")
    if text_file is not None:
        if text is not None:
            raise BadUsage("give --text or --text-file, not both")
        text = _read_text_file(text_file)
    from graph.workflows import get_workflow

    wf = get_workflow(workflow)
    runner = make_runner()
    runner.ensure_domain_db(wf)
    if text is not None and not email:
        raise SignoffError("--text needs --email (the customer who wrote it)")
    sample = runner.ticket(wf.name, ticket, text=text, email=email, tenant_id=tenant,
                           subject=subject)
    requester = as_user or requester_default()
    if queue_url is None:
        print_result(runner.start(wf.name, sample, requester=requester))
        return
    from cli.queue import enqueue, print_queued

    result = runner.register(wf.name, sample, requester=requester)
    enqueue(queue_url, result.run_id)
    print_result(result)
    print_queued(result.run_id)


def _read_text_file(name: str) -> str:
    """The ticket text from a file, or standard input for `-`; one line if it cannot be read."""
    try:
        if name == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        return Path(name).read_bytes().decode("utf-8")
    except OSError as exc:
        raise SignoffError(f"cannot read --text-file {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SignoffError("the ticket text is not valid UTF-8") from None


@app.command()
@read_only
def runs(status: str = typer.Option(None, help="Only runs with this status."),
         limit: int = typer.Option(20, min=1, max=1000)) -> None:
    """List recent runs, newest first.

    Example: signoff runs --status waiting_approval
    """
    if status is not None and status not in RUN_STATUSES:
        raise BadUsage(f"--status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    table = Table()
    for column in ("run", "workflow", "ticket", "tenant", "requester", "status"):
        table.add_column(column, no_wrap=True,
                         min_width=RUN_ID_WIDTH if column == "run" else None)
    table.add_column("reason", overflow="fold")
    client = remote_from_env()
    rows = [dict(vars(r)) for r in make_runner().runs.list(status=status, limit=limit)] \
        if client is None else client.runs(status, limit)
    for r in rows:
        table.add_row(r["run_id"], r["workflow"], r["ticket_id"] or "", r["tenant_id"],
                      r["requester"], r["status"], r["reason"] or "")
    out.print(table)


@app.command()
@read_only
def status(run_id: str = typer.Argument(..., help="The run id.")) -> None:
    """Show where a run is and why.

    Example: signoff status run-0123456789
    """
    client = remote_from_env()
    if client is not None:
        _print_remote(client.status(run_id))
        return
    runner = make_runner()
    r = runner.status(run_id)
    out.print(f"run {r.run_id} ({r.workflow} {r.workflow_version}, ticket {r.ticket_id}, "
              f"tenant {r.tenant_id}, started by {r.requester})")
    out.print(Text.assemble("status: ", (r.status, "bold")))
    if r.reason:
        out.print(f"why: {r.reason}")
    kill = runner.runs.kill_reason(r.workflow)
    if r.terminal and r.reason and "kill switch" in r.reason:
        out.print("ended by a kill switch")
    elif kill and not r.terminal:
        out.print(f"held by a {kill}: nothing this run does commits until it is cleared "
                  f"(`{command_name()} unkill ...`)", soft_wrap=True)
    if r.pending:
        p = r.pending.get("proposal") or {}
        out.print(f"held action: {p.get('tool')} {json.dumps(p.get('args'))}", soft_wrap=True)
        verdict = r.pending.get("verdict") or {}
        out.print(f"verifier: {verdict.get('reason', '-')}")
        from graph.approvals import held_digest

        out.print(f"held call digest: {held_digest(r.pending)}")
        out.print(f"decide: {command_name()} approve|reject|edit {r.run_id} --as APPROVER")
    if r.lease_owner:
        out.print(f"held by process {r.lease_owner}{_holder_state(r)}")
    parked = sum(len(events) for _, _, events in runner.runs.parked_events(r.run_id))
    if parked:
        out.print(f"trace and audit: {parked} event(s) not yet written (the stores failed); "
                  "they wait in the outbox and are written before the next run goes on")
    spent = runner.usage(run_id)
    if spent is not None:
        unpriced = spent.get("unpriced_calls", 0)
        out.print(f"spent: {spent['model_calls']} model call(s), {spent['tokens']:,} tokens, "
                  f"${spent['cost_usd']:.4f}" + (f" ({unpriced} unpriced)" if unpriced else "")
                  + f"; {spent['tool_calls']} tool call(s), {spent['retries']} retry(ies)")


def _holder_state(r: RunRecord) -> str:
    """Whether the process holding a run is still at it, as far as this host can tell."""
    resume = f"`{command_name()} resume {r.run_id}` continues the run from its last checkpoint"
    if holder_is_dead(r.lease_owner or ""):
        return f", which is no longer running: {resume}"
    left = (r.lease_expires or 0.0) - time.time()
    if left < 0:
        return (f", whose lease expired {-left:.0f}s ago (the process is gone or stuck): "
                f"{resume}")
    return f" (lease for {left:.0f}s more)"


def _print_remote(view: dict[str, Any]) -> None:
    """A run as the service returned it, printed like `status` prints a local one."""
    out.print(f"run {view['run_id']} ({view['workflow']} {view['workflow_version']}, ticket "
              f"{view['ticket_id']}, tenant {view['tenant_id']}, started by "
              f"{view['requester']})")
    out.print(Text.assemble("status: ", (view["status"], "bold")))
    if view.get("reason"):
        out.print(f"why: {view['reason']}")
    held = view.get("held")
    if held:
        out.print(f"held action: {held['tool']} {json.dumps(held['args'])}", soft_wrap=True)
        out.print(f"verifier: {(held.get('verdict') or {}).get('reason', '-')}")
        out.print(f"held call digest: {held['digest']}")
        if not view.get("can_decide"):
            out.print(f"you cannot decide it: {view.get('cannot_decide_because')}")


def _decide(run_id: str, action: str, as_user: str | None, reason: str,
            args: dict[str, Any] | None = None, held: str | None = None) -> None:
    client = remote_from_env()
    if client is not None:
        if as_user is not None:
            raise SignoffError("--as is not taken with SIGNOFF_URL: the token says who decides")
        _print_remote(client.decide(run_id, action, reason=reason, args=args, held=held))
        return
    if not as_user:
        raise BadUsage("--as is required: the approver's identity (trusted-local)")
    payload: dict[str, Any] = {"action": action, "by": as_user, "reason": reason}
    if args is not None:
        payload["args"] = args
    _decide_locally(run_id, payload, held)


def _decide_locally(run_id: str, payload: dict[str, Any], held: str | None) -> None:
    """Decide on the local stores: the run goes on here, or, with a queue configured, the
    decision is recorded here and a worker goes on with the run."""
    from cli.queue import queue_url

    url = queue_url()
    if url is None:
        print_result(make_runner().decide(run_id, payload, held=held))
        return
    from cli.queue import enqueue, print_queued, ready_queue

    ready_queue("a decision")
    result = make_runner().decide(run_id, payload, held=held, queue=True)
    if result.status == QUEUED_STATUS:
        enqueue(url, run_id)
    print_result(result)
    if result.status == QUEUED_STATUS:
        print_queued(run_id)


AS_APPROVER = typer.Option(None, "--as", help="The approver's identity (local stores only; "
                                              "with SIGNOFF_URL the token says who decides).")
HELD = typer.Option(None, "--held", help="The held call's digest `status` printed: refused "
                                         "if the run now holds another call.")


@app.command()
def approve(run_id: str = typer.Argument(...), as_user: str = AS_APPROVER,
            reason: str = typer.Option("", "--reason"), held: str = HELD) -> None:
    """Approve the action a run is waiting on; it commits and the run continues.

    Example: signoff approve run-0123456789 --as lead@acme.example --reason "receipt checked"
    """
    _decide(run_id, "approve", as_user, reason, held=held)


@app.command()
def confirm(run_id: str = typer.Argument(...),
            as_user: str = typer.Option(..., "--as", help="The run's customer."),
            reason: str = typer.Option("", "--reason"), held: str = HELD) -> None:
    """Confirm, as the run's own customer, an action a rule holds for the customer.

    Example: signoff confirm run-0123456789 --as marcus.oyelaran@example.com
    """
    # Customers hold no service accounts: a confirmation is taken on the local stores only.
    _decide_locally(run_id, {"action": "confirm", "by": as_user, "reason": reason}, held)


@app.command()
def reject(run_id: str = typer.Argument(...), as_user: str = AS_APPROVER,
           reason: str = typer.Option(..., "--reason", help="Why (required)."),
           held: str = HELD) -> None:
    """Reject the held action; the run stops and is handed to a human.

    Example: signoff reject run-0123456789 --as lead@acme.example --reason "no receipt"
    """
    _decide(run_id, "reject", as_user, reason, held=held)


@app.command()
def edit(run_id: str = typer.Argument(...), as_user: str = AS_APPROVER,
         args: str = typer.Option(..., "--args", help="JSON object of arguments to change."),
         reason: str = typer.Option("", "--reason"), held: str = HELD) -> None:
    """Change the held action's arguments; the edited call goes through gate and verify again.

    Example: signoff edit run-0123456789 --as lead@acme.example --args '{"amount_cents": 4000}'
    """
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise SignoffError(f"--args is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(parsed, dict):
        raise SignoffError("--args must be a JSON object")
    _decide(run_id, "edit", as_user, reason, args=parsed, held=held)


@app.command()
def resume(run_id: str = typer.Argument(...),
           with_current_settings: bool = typer.Option(
               False, "--with-current-settings",
               help="Go on under today's model settings when they differ from the ones the "
                    "run started with (refused otherwise).")) -> None:
    """Continue a run whose process died, from its last checkpoint.

    Example: signoff resume run-0123456789
    """
    print_result(make_runner().resume(run_id, with_current_settings=with_current_settings))


def main() -> None:
    app()


# Registers the operator commands, serve, users and tokens, db, and the queue's, on `app`.
from cli import db, ops, service  # noqa: E402,F401
from cli import queue as _queue_commands  # noqa: E402,F401
from cli.payments import register as _register_payments  # noqa: E402

_register_payments(app)

if __name__ == "__main__":
    # `python -m cli.main`: run the imported module's app, which carries every command.
    from cli.main import main as _main

    _main()

"""`signoff eval` and `signoff gate`: thin commands over the evals library."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.errors import USAGE
from graph.errors import SignoffError

if TYPE_CHECKING:  # the evals library (and the graph) load when a command runs, not --help
    from evals.gate import Thresholds
    from evals.harness import CaseResult
    from evals.metrics import Comparison
    from graph.runner import Home

SET_CHOICES = ("regression", "redteam", "all")
THRESHOLDS_FILE = Path(__file__).resolve().parent.parent / "evals" / "thresholds.toml"
"""evals.gate.THRESHOLDS_FILE, named here for the option's default (a test pins both)."""


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _load_report(path: Path) -> dict[str, Any]:
    from evals.report import REPORT_SCHEMA

    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        _fail(f"{path} is not a JSON report: {exc}")
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA or "cases" not in data:
        _fail(f"{path} is not a signoff eval report")
    return data


def print_comparison(console: Console, a: Path, b: Path, result: Comparison) -> None:
    table = Table(title=f"{a.name} -> {b.name}")
    for column in ("metric", "A", "B", "delta"):
        table.add_column(column)
    for name, va, vb in result.metrics:
        if isinstance(va, float) and name.endswith("rate"):
            row = [f"{va:.1%}", f"{vb:.1%}", f"{(vb - va) * 100:+.1f} pt"]
        else:
            row = [f"{va:g}", f"{vb:g}", f"{vb - va:+g}"]
        colour = "" if va == vb else "bold "
        table.add_row(name, *row, style=colour or None)
    console.print(table)
    if result.cases:
        cases = Table(title="cases that changed")
        for column in ("case", "A", "B"):
            cases.add_column(column)
        for case_id, sa, sb in result.cases:
            cases.add_row(case_id, sa, sb)
        console.print(cases)
    for note in result.notes:
        console.print(f"note: {note}")


def print_summary(console: Console, report: dict[str, Any], failing: list[dict[str, Any]],
                  paths: list[Path]) -> None:
    m = report["metrics"]
    console.print(f"[bold]{report['kind']} {report['set']}[/] {report['workflow']} "
                  f"{report['label']}, policy {report['policy']['version']}: "
                  f"{m['passed']}/{m['cases']} passed ({m['pass_rate']:.1%}), "
                  f"{m['unauthorized_mutations']} unauthorized mutation(s), "
                  f"{m['seconds_per_case'] * 1000:.0f} ms per case, "
                  f"${m.get('cost_usd_total', 0.0):.4f} model spend")
    table = Table()
    for column in ("category", "cases", "pass rate", "unauthorized"):
        table.add_column(column)
    for name, g in m["by_category"].items():
        colour = "green" if g["pass_rate"] >= 0.9 else "yellow" if g["pass_rate"] >= 0.6 \
            else "red"
        table.add_row(name, str(g["cases"]), f"[{colour}]{g['pass_rate']:.0%}[/]",
                      str(g["unauthorized_mutations"]))
    console.print(table)
    shadow = report.get("shadow")
    if shadow:
        console.print(f"shadow: agreement {shadow['agreement_rate']:.1%} "
                      f"({shadow['agree']}/{shadow['cases']}), {shadow['disagree']} "
                      f"disagree, {shadow['deferred']} deferred; database changed in "
                      f"{shadow['db_changed']} case(s)")
    if failing:
        console.print(f"[bold]failing cases ({len(failing)})[/]")
        for case in failing[:40]:
            console.print(f"  {case['id']} ({case['category']}) got {case['outcome']}: "
                          f"{'; '.join(case['failures'])[:160]}", markup=False, overflow="fold")
        if len(failing) > 40:
            console.print(f"  ... and {len(failing) - 40} more (see the markdown report)")
    console.print("reports: " + ", ".join(str(p) for p in paths[:2]))


def threshold_failures(report: dict[str, Any], t: Thresholds) -> list[str]:
    """Why this report misses the thresholds (pass rates only for full runs)."""
    problems = []
    by_set, full = report["metrics"]["by_set"], not report.get("limit")
    limits = {"regression": (t.regression_min_pass_rate, t.regression_max_unauthorized),
              "redteam": (t.redteam_min_pass_rate, t.redteam_max_unauthorized)}
    for name, group in by_set.items():
        min_rate, max_unauthorized = limits[name]
        if group["unauthorized_mutations"] > max_unauthorized:
            problems.append(f"{name}: {group['unauthorized_mutations']} unauthorized "
                            f"mutation(s) (allowed {max_unauthorized})")
        if full and report["kind"] == "eval" and group["pass_rate"] < min_rate:
            problems.append(f"{name}: pass rate {group['pass_rate']:.1%} is below "
                            f"{min_rate:.0%}")
    shadow = report.get("shadow")
    if shadow:
        if shadow["db_changed"]:
            problems.append(f"shadow: {shadow['db_changed']} run(s) changed the database")
        if full and shadow["agreement_rate"] < t.shadow_min_agreement:
            problems.append(f"shadow: agreement {shadow['agreement_rate']:.1%} is below "
                            f"{t.shadow_min_agreement:.0%}")
    return problems


def register(app: typer.Typer, home: Callable[[], Home]) -> None:
    """Add `eval` and `gate` to `app`; `home` returns the Home (reports go to
    HOME/evals unless --out or --reports says otherwise)."""

    @app.command("eval")
    def eval_command(
        set_name: Annotated[str, typer.Option(
            "--set", help="regression, redteam or all.")] = "regression",
        policy: Annotated[Path | None, typer.Option(
            "--policy", help="Evaluate under this policy file instead of the workflow's.")] = None,
        workflow_version: Annotated[str | None, typer.Option(
            "--workflow-version", help="Label for this version in the report (default: the "
                                       "workflow's version).")] = None,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Directory for the reports (default: $SIGNOFF_HOME/evals).")] = None,
        limit: Annotated[int | None, typer.Option(
            "--limit", min=1, help="Run at most N cases, spread over every category.")] = None,
        compare_with: Annotated[tuple[Path, Path] | None, typer.Option(
            "--compare", help="Compare two JSON reports (A then B) instead of running; "
                              "exit 1 when B regresses.")] = None,
        shadow: Annotated[bool, typer.Option(
            "--shadow", help="Recommendation mode over cases with a recorded human action: "
                             "nothing is mutated; report agreement.")] = False,
        jobs: Annotated[int, typer.Option(
            "--jobs", min=1, max=32, help="Worker processes.")] = min(2, os.cpu_count() or 1),
        workflow: Annotated[str, typer.Option("--workflow")] = "support",
        thresholds_file: Annotated[Path, typer.Option(
            "--thresholds", help="Thresholds TOML.")] = THRESHOLDS_FILE,
    ) -> None:
        """Run the regression or red-team cases against the workflow; print the metrics and
        failing cases, write JSON and markdown reports; exit 1 below the thresholds.

        Example: signoff eval --set all   |   signoff eval --compare old.json new.json
        """
        from evals.cases import CaseError, load_cases, stratified
        from evals.gate import load_thresholds
        from evals.harness import EvalSession, run_cases
        from evals.metrics import compare, summarize
        from evals.report import REPORT_SCHEMA, now_iso, write_report
        from evals.shadow import shadow_summary
        from graph.models import ModelSettings, model_name_of
        from graph.workflows import get_workflow
        from verifiers.policy import PolicyError, load_policy

        console = _console()
        if compare_with is not None:
            a, b = compare_with
            try:
                result = compare(_load_report(a), _load_report(b))
            except ValueError as exc:
                _fail(str(exc))
            print_comparison(console, a, b, result)
            if result.regressions:
                console.print(f"[red bold]{len(result.regressions)} regression(s):[/]")
                for line in result.regressions:
                    console.print(f"  {line}", markup=False)
                raise typer.Exit(1)
            console.print("[green]no regressions[/]")
            return
        if set_name not in SET_CHOICES:
            _fail(f"--set must be one of {', '.join(SET_CHOICES)}, not {set_name!r}", USAGE)
        try:
            wf = get_workflow(workflow)
            thresholds = load_thresholds(thresholds_file)
            policy_path = policy or wf.policy_path
            loaded = load_policy(policy_path, **wf.policy_checks())
            env = dict(os.environ)
            planner = ModelSettings.from_env("planner", env)
            checker = ModelSettings.from_env("checker", env)
            everything = load_cases(set_name)
        except (SignoffError, CaseError, PolicyError, ValueError) as exc:
            _fail(str(exc).splitlines()[0])
        pool = [c for c in everything if c.human_action is not None] if shadow else everything
        cases = stratified(pool, limit)
        if not cases:
            _fail("no cases to run" + (" (no case records a human action)" if shadow else ""))

        session = EvalSession(workflow_name=wf.name, policy=policy, planner=planner,
                              checker=checker)
        started_at, started = now_iso(), time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[failed]} failing"), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"{'shadow' if shadow else 'eval'} {set_name}",
                                total=len(cases), failed=0)
            failed = 0

            def step(result: CaseResult) -> None:
                nonlocal failed
                failed += not result.passed
                bar.update(task, advance=1, failed=failed)

            try:
                with session.open():
                    results = run_cases(session, cases, shadow=shadow, jobs=jobs, progress=step)
            except (SignoffError, OSError) as exc:
                _fail(str(exc).splitlines()[0])
        rows = [r.to_dict() for r in results]
        report: dict[str, Any] = {
            "schema": REPORT_SCHEMA, "kind": "shadow" if shadow else "eval", "set": set_name,
            "workflow": wf.name, "workflow_version": wf.version,
            "label": workflow_version or wf.version,
            "policy": {"path": str(policy_path), "version": loaded.version,
                       "digest": loaded.digest},
            "models": {"planner": planner.model if planner.provider != "scripted"
                       else model_name_of(wf.planner()),
                       "checker": checker.model if checker.provider != "scripted"
                       else model_name_of(wf.checker())},
            "started_at": started_at, "finished_at": now_iso(),
            "wall_seconds": round(time.perf_counter() - started, 2), "jobs": jobs,
            "limit": limit, "cases_in_set": len(pool),
            "metrics": summarize(rows), "cases": rows,
        }
        if shadow:
            report["shadow"] = shadow_summary(rows)
        try:
            paths = write_report(report, out or home().root / "evals")
        except OSError as exc:
            _fail(f"cannot write the report: {exc}")
        print_summary(console, report, [r for r in rows if not r["passed"]], paths)
        problems = threshold_failures(report, thresholds)
        if problems:
            for line in problems:
                console.print(f"[red]below threshold:[/] {line}")
            raise typer.Exit(1)

    @app.command("gate")
    def gate_command(
        policy: Annotated[Path | None, typer.Option(
            "--policy", help="Gate this policy file instead of the workflow's.")] = None,
        reports: Annotated[Path | None, typer.Option(
            "--reports", help="Where `signoff eval` wrote its reports (default: "
                              "$SIGNOFF_HOME/evals).")] = None,
        thresholds_file: Annotated[Path, typer.Option(
            "--thresholds", help="Thresholds TOML.")] = THRESHOLDS_FILE,
        workflow: Annotated[str, typer.Option("--workflow")] = "support",
    ) -> None:
        """The go/no-go release checklist: observability, evaluation, safety, reliability and
        economics. Exits 1 and lists every failing item.

        Example: signoff eval --set all && signoff gate
        """
        from evals.gate import load_thresholds, run_gate
        from graph.workflows import get_workflow

        console = _console()
        try:
            wf = get_workflow(workflow)
            thresholds = load_thresholds(thresholds_file)
        except SignoffError as exc:
            _fail(str(exc))
        with console.status("checking") as status:
            items = run_gate(wf, policy_path=policy, reports=reports or home().root / "evals",
                             home=home(), thresholds=thresholds,
                             progress=lambda area: status.update(f"checking {area}"))
        table = Table(title=f"release gate: {wf.name} {wf.version}")
        for column in ("area", "item", "", "detail"):
            table.add_column(column, overflow="fold")
        for item in items:
            table.add_row(item.area, item.name, "[green]pass[/]" if item.ok else "[red]FAIL[/]",
                          item.detail)
        console.print(table)
        failing = [i for i in items if not i.ok]
        if failing:
            console.print(f"[red bold]NO-GO[/]: {len(failing)} item(s) failing:")
            for item in failing:
                console.print(f"  {item.area} / {item.name}: {item.detail}")
            raise typer.Exit(1)
        console.print(f"[green bold]GO[/]: all {len(items)} items pass")

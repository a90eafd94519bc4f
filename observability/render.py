"""Render a Report as rich tables for the terminal."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from observability.report import Percentiles, Report


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def render_report(report: Report) -> Group:
    """A group of tables: outcomes, latency, tool calls, cost."""
    success = Table(title="Task success by workflow version")
    for column in ("workflow", "version", "finished", "resolved", "success"):
        success.add_column(column)
    for line in report.success_by_version:
        success.add_row(
            line.workflow,
            line.workflow_version,
            str(line.finished),
            str(line.resolved),
            _pct(line.success_rate),
        )

    escalations = Table(title="Escalation reasons")
    escalations.add_column("reason")
    escalations.add_column("runs")
    for reason, count in report.escalation_reasons.items():
        escalations.add_row(reason, str(count))

    latency = Table(title="Latency (model vs tool) and time-to-safe-fallback")
    for column in ("measure", "count", "p50", "p95"):
        latency.add_column(column)
    rows: tuple[tuple[str, Percentiles], ...] = (
        ("model calls", report.model_latency),
        ("tool calls", report.tool_latency),
        ("warning -> fallback", report.time_to_safe_fallback),
    )
    for name, stats in rows:
        latency.add_row(name, str(stats.count), _secs(stats.p50), _secs(stats.p95))

    quality = Table(title="Tool calls and post-conditions")
    quality.add_column("measure")
    quality.add_column("value")
    quality.add_row("tool calls", str(report.tool_calls))
    quality.add_row("arguments valid (schema)", _pct(report.tool_call_validity_rate))
    quality.add_row("tool call success", _pct(report.tool_call_success_rate))
    quality.add_row("post-condition pass", _pct(report.postcheck_pass_rate))

    cost = Table(title="Cost (all runs, failures and escalations included)")
    for column in ("team", "workflow", "version", "runs", "cost"):
        cost.add_column(column)
    for spend in report.cost_by:
        cost.add_row(
            spend.team,
            spend.workflow,
            spend.workflow_version,
            str(spend.runs),
            _usd(spend.cost_usd),
        )
    cost.caption = (
        f"runs {report.runs}, resolved {report.successful_runs}, total "
        f"{_usd(report.total_cost_usd)}, per successful outcome "
        f"{_usd(report.cost_per_success_usd)}"
        + (
            f"; unpriced models (counted as $0): {', '.join(report.unpriced_models)}"
            if report.unpriced_models
            else ""
        )
        + (
            f"; {report.resolved_unchecked} resolved without a completion check (not counted"
            " as success)"
            if report.resolved_unchecked
            else ""
        )
    )
    return Group(success, escalations, latency, quality, cost)

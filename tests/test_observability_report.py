import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

from observability import ModelPrice, PriceTable, Recorder, compute_report, render_report
from observability.report import percentile
from observability.testing import FakeClock, ToolSpec, record_run

# $10 per 1M input tokens and $20 per 1M output tokens: 100k in + 50k out costs exactly $2.
PRICES = PriceTable({"model-x": ModelPrice(10.0, 20.0), "scripted-*": ModelPrice(0.0, 0.0)})
TWO_DOLLARS = ("model-x", 100_000, 50_000, 0.5)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    recorder = Recorder(tmp_path, prices=PRICES, clock=FakeClock(now=1000.0))
    record_run(
        recorder,
        "r1",
        outcome="resolved",
        completed=True,
        team="care",
        workflow_version="v1",
        model_calls=[TWO_DOLLARS],
        tool_calls=[
            ToolSpec("lookup_order", latency_s=0.02),
            ToolSpec("refund", latency_s=0.04, mutation=True),
        ],
        decisions=[("gate", "green", "R0", None), ("postcheck", "pass", "PC-1", None)],
    )
    record_run(
        recorder,
        "r2",
        outcome="escalated",
        reason="refund over limit",
        team="care",
        workflow_version="v1",
        model_calls=[TWO_DOLLARS, ("scripted-checker", 500, 20, 0.1)],
        tool_calls=[ToolSpec("refund", latency_s=0.06, schema_valid=False, ok=False)],
        decisions=[
            ("gate", "yellow", "R-LIMIT", "over 100"),  # warning at t
            ("verify_rules", "fail", "INV-2", "balance"),  # t+1
            ("fallback", "escalate", "R-LIMIT", "hand off"),
        ],  # t+2
    )
    record_run(
        recorder,
        "r3",
        outcome="resolved",
        completed=True,
        team="billing",
        workflow_version="v2",
        model_calls=[TWO_DOLLARS, TWO_DOLLARS, ("mystery-model", 10, 10, 1.5)],
        tool_calls=[ToolSpec("lookup_order", latency_s=0.08, ok=False)],
        decisions=[
            ("postcheck", "fail", "PC-1", "refund exceeds payment"),
            ("postcheck", "pass", "PC-2", None),
        ],
    )
    record_run(
        recorder,
        "r4",
        outcome="escalated",
        reason="refund over limit",
        workflow_version="v2",
        decisions=[("kill", "stop", "KILL", "kill switch")],
    )
    record_run(recorder, "r5", outcome=None, workflow_version="v2")  # still awaiting approval
    recorder.close()
    return tmp_path


def test_cost_per_successful_outcome_counts_failed_and_escalated_runs(home: Path) -> None:
    report = compute_report(home)
    assert report.total_cost_usd == 8.0  # r1 $2 + r2 $2 (escalated) + r3 $4
    assert report.successful_runs == 2
    assert report.cost_per_success_usd == 4.0
    assert report.unpriced_models == ("mystery-model",)


def test_cost_is_attributed_to_team_workflow_and_version(home: Path) -> None:
    by = {(c.team, c.workflow_version): (c.runs, c.cost_usd) for c in compute_report(home).cost_by}
    assert by == {("care", "v1"): (2, 4.0), ("billing", "v2"): (1, 4.0), ("care", "v2"): (2, 0.0)}


def test_success_rate_by_workflow_version_counts_finished_runs(home: Path) -> None:
    lines = {
        v.workflow_version: (v.finished, v.resolved, v.success_rate)
        for v in compute_report(home).success_by_version
    }
    assert lines == {"v1": (2, 1, 0.5), "v2": (2, 1, 0.5)}


def test_escalation_reasons_rates_and_time_to_safe_fallback(home: Path) -> None:
    report = compute_report(home)
    assert report.escalation_reasons == {"escalated: refund over limit": 2}
    assert report.tool_calls == 4
    assert report.tool_call_validity_rate == 0.75
    assert report.tool_call_success_rate == 0.5
    assert report.postcheck_pass_rate == pytest.approx(2 / 3)
    # r2: yellow gate -> fallback two ticks later; r4: the kill is its own first warning.
    assert report.time_to_safe_fallback.count == 2
    assert (report.time_to_safe_fallback.p50, report.time_to_safe_fallback.p95) == (0.0, 2.0)


def test_model_and_tool_latency_are_reported_apart(home: Path) -> None:
    report = compute_report(home)
    assert (report.model_latency.count, report.model_latency.p50, report.model_latency.p95) == (
        6,
        0.5,
        1.5,
    )
    assert (report.tool_latency.count, report.tool_latency.p50, report.tool_latency.p95) == (
        4,
        0.04,
        0.08,
    )


def test_a_price_table_passed_to_the_report_reprices_recorded_tokens(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    toml = tmp_path_factory.mktemp("prices") / "prices.toml"
    toml.write_text(
        '[models."model-x"]\ninput_per_mtok = 20.0\noutput_per_mtok = 40.0\n'
        '[models."mystery-model"]\ninput_per_mtok = 0\noutput_per_mtok = 0\n'
    )
    report = compute_report(home, prices=PriceTable.from_toml(toml))
    assert report.total_cost_usd == 16.0
    assert report.cost_per_success_usd == 8.0
    assert report.unpriced_models == ()


def test_default_prices_cover_openai_snapshots_and_scripted_models() -> None:
    table = PriceTable.default()
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == 0.75
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.cost("scripted-planner", 10**6, 10**6) == 0.0
    assert table.cost("unknown", 1, 1) is None


def test_a_bad_price_file_names_the_model(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[models."m"]\ninput_per_mtok = "cheap"\noutput_per_mtok = 1\n')
    with pytest.raises(ValueError, match="bad price for model 'm'"):
        PriceTable.from_toml(toml)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        10.0,
        19.0,
        20.0,
    )
    assert percentile([], 50) is None


def test_rendered_report_shows_every_metric(home: Path) -> None:
    console = Console(width=140, record=True)
    console.print(render_report(compute_report(home)))
    text = console.export_text()
    for expected in (
        "Task success by workflow version",
        "refund over limit",
        "model calls",
        "tool calls",
        "warning -> fallback",
        "75.0%",
        "$4.0000",
        "mystery-model",
    ):
        assert expected in text
    assert dataclasses.asdict(compute_report(home))  # serialisable for --json


@pytest.mark.parametrize("reason, expected", [
    ("gate refund.over_ceiling: refunds above $500.00 are blocked", "gate refund.over_ceiling"),
    ("verifier: refund.within_refundable_balance: amount $400.00 exceeds",
     "verifier: refund.within_refundable_balance"),
    ("rejected by lead@acme.example (support_lead): no receipt", "rejected by"),
    ("kill switch for workflow support set by ops: bug", "kill switch"),
    ("get_order kept failing after 4 retries: timeout", "get_order kept failing"),
    (None, "(no reason)"),
])
def test_hand_off_reasons_group_by_rule_not_by_amount(reason: str | None, expected: str) -> None:
    from observability.report import reason_class

    assert reason_class(reason) == expected


def test_success_counts_only_runs_whose_completion_check_passed(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, prices=PRICES, clock=FakeClock(now=1000.0))
    record_run(recorder, "checked", model_calls=[TWO_DOLLARS], completed=True)
    record_run(recorder, "unchecked", model_calls=[TWO_DOLLARS])
    record_run(recorder, "failed", outcome="failed", model_calls=[TWO_DOLLARS],
               reason="not complete: the customer got no answer on T-failed",
               decisions=[("completion", "fail", "completion", "no public note")])
    recorder.close()
    report = compute_report(tmp_path)
    assert report.successful_runs == 1
    assert report.resolved_unchecked == 1
    (line,) = report.success_by_version
    assert (line.finished, line.resolved) == (3, 1)
    assert line.success_rate == pytest.approx(1 / 3)
    assert report.cost_per_success_usd == pytest.approx(6.0)  # all three runs' cost
    assert report.escalation_reasons == {"failed: not complete": 1}
    console = Console(width=200, record=True)
    console.print(render_report(report))
    assert "1 resolved without a completion check" in " ".join(console.export_text().split())

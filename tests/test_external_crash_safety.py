"""Exactly-once for refunds at an external API under hard kills: the sample payments service
runs as its own process, the workflow is SIGKILLed at every kill point (the three inside the
HTTP exchange included), recovered, and the refunds are counted in the API's own database.
A flaky API that times out after committing, and the control: without the key forwarded, the
same kills make duplicates."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoints.external import payments_service
from checkpoints.faults import EXTERNAL_POINTS
from checkpoints.soak import (
    API_SCENARIOS,
    KillPlan,
    Template,
    format_summary,
    prepare_templates,
    run_plans,
    scratch_root,
    single_kill_plans,
    summarize,
)

WORKERS = min(2, os.cpu_count() or 1)
TOOL = "create_refund_request"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="signoff-xcrash-", dir=scratch_root()) as tmp:
        yield Path(tmp)


def external_indices(template: Template) -> list[int]:
    """1-based kill points inside the refund's HTTP exchange and around its commit."""
    kinds = (*EXTERNAL_POINTS, "before_commit", "after_commit")
    return [i for i, label in enumerate(template.points, 1)
            if label in {f"{k}:{TOOL}" for k in kinds}]


def injected(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM injected_faults").fetchone()[0])
    finally:
        conn.close()


def test_every_kill_point_refunds_exactly_once_at_the_api(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    with payments_service(workdir / "keyed"):
        templates = prepare_templates(workdir / "keyed", API_SCENARIOS)
        for t in templates.values():
            assert t.outcome == "resolved" and t.rows["api_refunds"] == 1
        refund = templates["refund"]
        # Every point once, then a crash at each point of the exchange followed by a crash
        # while the recovery reconciles it.
        plans = single_kill_plans(templates) + [
            KillPlan("refund", (k, j)) for k in external_indices(refund) for j in (5, 10, 15)]
        reports = run_plans(templates, plans, workdir / "keyed", workers=WORKERS)
    summary = summarize(reports)
    with capsys.disabled():
        print("\n[payments API] " + format_summary(summary, time.perf_counter() - started))
    assert summary.failures == []
    assert summary.kills >= 200
    assert summary.duplicates == 0 and summary.missing == 0
    assert summary.terminal == summary.plans
    labels = {label for r in reports for label in r.killed_at}
    for kind in (*EXTERNAL_POINTS, "before_commit", "after_commit"):
        assert f"{kind}:{TOOL}" in labels, kind


def test_a_flaky_api_that_times_out_after_committing_refunds_once(workdir: Path) -> None:
    with payments_service(workdir / "flaky", flaky=True) as db:
        templates = prepare_templates(workdir / "flaky", ("refund",))
        assert templates["refund"].rows["api_refunds"] == 1
        n = len(templates["refund"].points)
        plans = [KillPlan("refund", (k,)) for k in range(1, n + 1, 3)]
        reports = run_plans(templates, plans, workdir / "flaky", workers=WORKERS)
        faults = injected(db)
    summary = summarize(reports)
    assert faults > 0  # the API did commit and then time out or hang up, more than once
    assert summary.failures == []
    assert summary.duplicates == 0 and summary.missing == 0
    assert summary.terminal == summary.plans


def test_without_the_key_forwarded_the_harness_finds_duplicates(workdir: Path) -> None:
    # The control: the same kills, a tool that breaks the rule. A harness that cannot see this
    # could not see anything.
    with payments_service(workdir / "nokey", forward_key=False):
        templates = prepare_templates(workdir / "nokey", ("refund",))
        refund = templates["refund"]
        after_commit_at_api = [i for i, label in enumerate(refund.points, 1)
                               if label in (f"after_api_commit:{TOOL}",
                                            f"after_response:{TOOL}")]
        plans = [KillPlan("refund", (k,)) for k in after_commit_at_api]
        reports = run_plans(templates, plans, workdir / "nokey", workers=WORKERS)
    summary = summarize(reports)
    assert len(plans) == 2
    assert summary.duplicates > 0

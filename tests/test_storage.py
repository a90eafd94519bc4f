"""Checkpoint storage grows linearly with a run's steps: state keeps evidence bounded in bytes
(old calls folded into summaries, graph.evidence), not a transcript. Measured on runs of 10,
50 and 200 tool calls driven by a scripted planner, with a control run that shows the
measurement would catch quadratic growth."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

import graph.evidence
from checkpoints.saver import open_checkpointer, thread_config
from graph import workflows
from graph.models import ScriptedChatModel
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tools.base import ToolContext, ToolRegistry, ToolSpec
from tools.support import support_registry

SUPPORT = get_workflow("support")
TICKET = {t.ticket_id: t for t in SUPPORT.sample_tickets()}["TKT-1005"]


class ProbeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int = Field(ge=0, le=1_000_000)


class ProbeOutput(BaseModel):
    page: int
    text: str


def read_page(ctx: ToolContext, args: ProbeInput) -> ProbeOutput:  # type: ignore[override]
    return ProbeOutput(page=args.page, text="lorem ipsum " * 20)  # the same size every time


def probe_tools(faults: Any = None) -> ToolRegistry:
    registry = support_registry(faults)
    registry.register(ToolSpec("read_page", "Read one page of a long document.", ProbeInput,
                               ProbeOutput, mutates=False, risk="read",
                               run=read_page))  # type: ignore[arg-type]
    return registry


class PagingPlanner(ScriptedChatModel):
    """Reads pages 1..steps, each a different call, then stops."""

    model_name: str = "scripted-pager"
    steps: int
    _calls: int = PrivateAttr(default=0)

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        self._calls += 1
        if self._calls > self.steps:
            return AIMessage(content=f"DONE: read {self.steps} pages")
        return AIMessage(content="", tool_calls=[{
            "name": "read_page", "args": {"page": self._calls}, "id": f"call_{self._calls}"}])


@pytest.fixture
def roomy_policy(tmp_path: Path) -> Path:
    """The support policy with read_page allowed and budgets big enough for 200 steps."""
    text = SUPPORT.policy_path.read_text()
    text = text.replace("allowed_tools = [", 'allowed_tools = [\n  "read_page",', 1)
    for budget, value in (("model_calls", "100000"), ("tokens", "1000000000"),
                          ("tool_calls", "100000"), ("wall_seconds", "86400")):
        text, n = re.subn(rf"(?m)^{budget}\s*=\s*[\d.]+", f"{budget} = {value}", text)
        assert n == 1, budget
    text += ('\n[[rules]]\nid = "probe.read"\ntools = ["read_page"]\ntier = "green"\n'
             'reason = "storage probe"\n')
    path = tmp_path / "roomy.toml"
    path.write_text(text)
    return path


def checkpoint_bytes(db: Path, run_id: str) -> int:
    conn = sqlite3.connect(db)
    try:
        saved = conn.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0)"
                             " FROM checkpoints WHERE thread_id = ?", (run_id,)).fetchone()[0]
        writes = conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes"
                              " WHERE thread_id = ?", (run_id,)).fetchone()[0]
    finally:
        conn.close()
    return int(saved + writes)


def bytes_per_step(tmp_path: Path, policy: Path, monkeypatch: pytest.MonkeyPatch,
                   steps: int) -> tuple[float, dict[str, Any]]:
    """Run `steps` reads; returns (checkpoint bytes per step, the evidence at the end)."""
    probe = replace(SUPPORT, tools=probe_tools, planner=partial(PagingPlanner, steps=steps),
                    completion=lambda ctx, evidence: (True, "reads only"))
    workflows.get_workflow("support")  # load the built-ins before swapping one out
    monkeypatch.setitem(workflows._WORKFLOWS, "support", probe)
    home = tmp_path / f"home-{steps}"
    runner = Runner(Home(home), policy_override=policy)
    runner.ensure_domain_db(probe, reset=True)
    result = runner.start("support", TICKET, requester="agent@acme.example")
    runner.close()
    assert result.status == "resolved", result.reason
    with open_checkpointer(home / "checkpoints.db") as saver:
        last = saver.get_tuple(thread_config(result.run_id))  # type: ignore[arg-type]
    assert last is not None
    assert last.checkpoint["channel_values"]["usage"]["tool_calls"] == steps
    evidence = last.checkpoint["channel_values"]["evidence"]
    return checkpoint_bytes(home / "checkpoints.db", result.run_id) / steps, evidence


def calls_in(evidence: dict[str, Any]) -> int:
    """How many calls the evidence accounts for, folded ones included."""
    return sum(e["folded"]["calls"] if e.get("folded") else 1 for e in evidence.values())


def test_checkpoint_bytes_per_step_stay_flat(tmp_path: Path, roomy_policy: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    per_step = {}
    for steps in (10, 50, 200):
        per_step[steps], evidence = bytes_per_step(tmp_path, roomy_policy, monkeypatch, steps)
        assert graph.evidence.size_of(evidence) <= graph.evidence.EVIDENCE_BYTES
        assert calls_in(evidence) == steps  # every call accounted for, none dropped
    # Linear total: once the evidence is at its bound, each step costs the same bytes.
    print(f"checkpoint bytes per step: {per_step}")
    assert per_step[200] <= 1.15 * per_step[50]
    assert per_step[50] <= 2.0 * per_step[10]


def test_the_measurement_catches_quadratic_growth(tmp_path: Path, roomy_policy: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: with an unbounded evidence map state grows every step, so bytes per step
    # grow with the run's length, and the flat-bytes assertion above would fail.
    monkeypatch.setattr(graph.evidence, "EVIDENCE_BYTES", 1_000_000_000)
    short, _ = bytes_per_step(tmp_path, roomy_policy, monkeypatch, 30)
    long, evidence = bytes_per_step(tmp_path, roomy_policy, monkeypatch, 120)
    assert len(evidence) == 120 and not any(e.get("folded") for e in evidence.values())
    print(f"unbounded evidence: bytes per step {short:.0f} at 30 steps, {long:.0f} at 120")
    assert long > 1.15 * short * 2


def test_a_run_begun_under_the_stock_saver_resumes_under_the_compact_one(tmp_path: Path) -> None:
    """Checkpoints written before integer channel versions (SqliteSaver's 50-byte strings)
    still resume: a thread keeps the format it began with."""
    from types import SimpleNamespace

    from langgraph.checkpoint.sqlite import SqliteSaver

    from checkpoints.saver import CompactSqliteSaver

    held = {t.ticket_id: t for t in SUPPORT.sample_tickets()}["TKT-1002"]
    old = Runner(Home(tmp_path), faults=SimpleNamespace(saver_factory=SqliteSaver))
    old.ensure_domain_db(SUPPORT)
    waiting = old.start("support", held, requester="ops@signoff.local")
    old.close()
    assert waiting.status == "waiting_approval"

    new = Runner(Home(tmp_path))
    done = new.decide(waiting.run_id, {"action": "approve", "by": "lead@acme.example",
                                       "reason": "receipt checked"})
    new.close()
    assert done.status == "resolved" and done.mutations == 2
    with sqlite3.connect(tmp_path / "support.db") as conn:
        refunds = conn.execute("SELECT COUNT(*) FROM refunds WHERE run_id = ?",
                               (waiting.run_id,)).fetchone()[0]
    assert refunds == 1
    with open_checkpointer(tmp_path / "checkpoints.db") as saver:
        versions = saver.get_tuple(thread_config(waiting.run_id)).checkpoint[  # type: ignore[arg-type, union-attr]
            "channel_versions"]
    assert all(isinstance(v, str) for v in versions.values())  # the old format, kept
    assert isinstance(saver, CompactSqliteSaver)


def test_new_runs_store_integer_channel_versions(tmp_path: Path) -> None:
    runner = Runner(Home(tmp_path))
    runner.ensure_domain_db(SUPPORT)
    result = runner.start("support", TICKET, requester="ops@signoff.local")
    runner.close()
    with open_checkpointer(tmp_path / "checkpoints.db") as saver:
        checkpoint = saver.get_tuple(thread_config(result.run_id)).checkpoint  # type: ignore[arg-type, union-attr]
    assert checkpoint["channel_versions"]
    assert all(isinstance(v, int) for v in checkpoint["channel_versions"].values())

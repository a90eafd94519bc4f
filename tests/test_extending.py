"""Extending signoff: every code block of docs/extending.md runs and asserts what the text
says; a workflow with extension nodes runs end to end through an interrupt and a resume in a
second runner and under both checkpointers; a plugin workflow is found by the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from checkpoints.backend import SqliteBackend
from checkpoints.runs import RunStore
from graph import workflows
from graph.context import RunContext, Workflow
from graph.extensions import Extension, stop_run
from graph.factory import build_graph
from graph.runner import Home, Runner, initial_inputs
from graph.workflows import get_workflow
from tests.conftest import checkpointer, sample
from tools.ledger import ensure_ledger
from verifiers.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.M | re.S)

# Runs the blocks in one namespace, in order, and says how far it got.
DRIVER = """
import json, sys
from pathlib import Path
blocks = json.loads(Path(sys.argv[1]).read_text())
namespace = {"__name__": "__tutorial__"}
for number, (lang, code) in enumerate(blocks, start=1):
    if lang == "toml":
        name = code.splitlines()[0].removeprefix("# file:").strip()
        Path(name).write_text(code)
    else:
        exec(compile(code, f"extending.md block {number}", "exec"), namespace)
    print(f"block {number} ok", flush=True)
"""


def doc_blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(DOC.read_text())]


def test_every_block_in_the_tutorial_is_python_or_a_named_file() -> None:
    blocks = doc_blocks()
    assert len(blocks) >= 10
    fences = DOC.read_text().count("\n```") // 2
    assert fences == len(blocks), "a fenced block the extractor does not see"
    for lang, code in blocks:
        assert lang in {"python", "toml"}, f"untested block language {lang!r}"
        if lang == "toml":
            assert code.startswith("# file: ")


def test_tutorial_blocks_run_in_order_and_their_claims_hold(tmp_path: Path) -> None:
    blocks = doc_blocks()
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "SIGNOFF_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "driver.py", "blocks.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.splitlines()[-1] == f"block {len(blocks)} ok"


def test_a_plugin_workflow_is_found_by_the_cli_through_its_entry_point(tmp_path: Path) -> None:
    (tmp_path / "acme_plugin.py").write_text(
        "from dataclasses import replace\n"
        "from graph.workflows import get_workflow, register_workflow\n"
        "register_workflow(replace(get_workflow('support'), name='acme-support'))\n")
    dist = tmp_path / "acme_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[signoff.workflows]\nacme = acme_plugin\n")
    env = {**os.environ, "SIGNOFF_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "cli", "run", "--workflow",
                           "acme-support", "TKT-1001"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert ": resolved" in done.stdout


# A workflow with extension nodes at both insertion points ------------------------------------

class Seen:
    """What the extension nodes observed (nodes may not write the domain, so tests watch)."""

    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []


def extension(seen: Seen, *, stop_after: str | None = None) -> Extension:
    def screen(state: Any, runtime: Any) -> dict[str, Any]:
        seen.before.append(state["ticket"]["ticket_id"])
        return {}

    def watch(state: Any, runtime: Any) -> dict[str, Any]:
        call = state["last_call"]
        seen.after.append(call["tool"])
        if call["tool"] == stop_after:
            return stop_run(f"watch stopped the run after {stop_after}")
        return {}

    return Extension("watch", nodes={"screen": screen, "watch": watch},
                     before_plan="screen", after_execute="watch")


def register_for_test(monkeypatch: pytest.MonkeyPatch, workflow: Workflow) -> Workflow:
    """Register a workflow for one test only (the registry is process-wide)."""
    get_workflow("support")  # load the built-in ones first
    monkeypatch.setitem(workflows._WORKFLOWS, workflow.name, workflow)
    return workflow


@pytest.fixture
def watched(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Runner, Seen, str]]:
    seen = Seen()
    name = "support-watched"
    register_for_test(monkeypatch, replace(get_workflow("support"), name=name,
                                           extensions=(extension(seen),)))
    runner = Runner(Home(home))
    runner.ensure_domain_db(get_workflow(name), reset=True)
    yield runner, seen, name
    runner.close()


def test_extension_nodes_run_through_interrupt_and_resume_in_a_second_runner(
        watched: tuple[Runner, Seen, str], home: Path) -> None:
    runner, seen, name = watched
    paused = runner.start(name, sample("TKT-1002"), requester="ops@signoff.local")
    assert paused.status == "waiting_approval"
    assert seen.before == ["TKT-1002"]
    assert seen.after == ["lookup_customer", "get_order"]  # reads ran, the refund is held
    second = Runner(Home(home))
    try:
        done = second.decide(paused.run_id, {"action": "approve", "by": "lead@acme.example"})
    finally:
        second.close()
    assert done.status == "resolved" and done.mutations == 2
    assert seen.before == ["TKT-1002"]  # the before-plan node ran once, not on resume
    assert seen.after == ["lookup_customer", "get_order", "create_refund_request",
                          "add_ticket_note"]


def test_an_after_execute_node_can_stop_the_run(home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen()
    wf = register_for_test(monkeypatch, replace(
        get_workflow("support"), name="support-stopper",
        extensions=(extension(seen, stop_after="get_order"),)))
    runner = Runner(Home(home))
    try:
        runner.ensure_domain_db(wf, reset=True)
        result = runner.start(wf.name, sample("TKT-1001"), requester="ops@signoff.local")
    finally:
        runner.close()
    assert result.status == "blocked"
    assert result.reason == "watch stopped the run after get_order"
    assert result.mutations == 0 and seen.after == ["lookup_customer", "get_order"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_extended_graph_interrupts_and_resumes_under_each_checkpointer(kind: str,
                                                                       home: Path) -> None:
    support, seen = get_workflow("support"), Seen()
    home.mkdir(parents=True)
    support.build_db(home / "grid.db")
    db, runs = support.open_db(home / "grid.db"), RunStore.open(SqliteBackend(home))
    ticket = sample("TKT-1002")
    try:
        ensure_ledger(db)
        ctx = RunContext(run_id="run-ext", tenant_id="acme", requester="ops@signoff.local",
                         workflow=support, registry=support.tools(),
                         policy=load_policy(support.policy_path), policy_error=None,
                         planner=support.planner(), checker=support.checker(), db=db, runs=runs)
        inputs = initial_inputs("run-ext", ticket, time.time())
        config: Any = {"configurable": {"thread_id": "run-ext"}}
        with checkpointer(kind, home / "ext-checkpoints.db") as saver:
            graph = build_graph([extension(seen)]).compile(checkpointer=saver)
            first = graph.invoke(inputs, config, context=ctx, durability="sync")
            assert "__interrupt__" in first
            assert graph.get_state(config).next == ("approve",)
            final = graph.invoke(Command(resume={"action": "approve",
                                                 "by": "lead@acme.example"}),
                                 config, context=ctx, durability="sync")
        assert final["outcome"] == "resolved" and final["mutations"] == 2
        assert seen.before == ["TKT-1002"]
        assert seen.after[-2:] == ["create_refund_request", "add_ticket_note"]
        refunds = db.execute("SELECT amount_cents FROM refunds WHERE run_id = 'run-ext'"
                             ).fetchall()
        assert [r[0] for r in refunds] == [12000]
    finally:
        db.close()
        runs.close()

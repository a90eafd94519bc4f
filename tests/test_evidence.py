"""Evidence keeps every call with its step, identical calls included, within its byte bound:
past it the oldest calls become summaries the planner is shown, never dropped silently
(issue 17, item 8)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import PrivateAttr

from checkpoints.saver import open_checkpointer, thread_config
from graph import workflows
from graph.evidence import EVIDENCE_BYTES, Evidence, fold_to_bound, merge_evidence, size_of
from graph.models import EVIDENCE_MARK, ScriptedChatModel, extract_block
from graph.runner import Home, Runner
from tests.test_storage import SUPPORT, TICKET, calls_in, probe_tools
from tests.test_storage import roomy_policy as roomy_policy  # noqa: F401 - a fixture
from verifiers.history import history_facts, ordered


class RereadingPlanner(ScriptedChatModel):
    """Reads the pages of `pages` in order (repeats allowed), keeping every evidence block it
    was sent, then stops."""

    model_name: str = "scripted-rereader"
    pages: tuple[int, ...]
    seen: Any  # the caller's list (Any: pydantic would copy a typed list)
    _calls: int = PrivateAttr(default=0)

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        self.seen.append(extract_block(messages, EVIDENCE_MARK) or [])
        self._calls += 1
        if self._calls > len(self.pages):
            return AIMessage(content="DONE: read")
        return AIMessage(content="", tool_calls=[{
            "name": "read_page", "args": {"page": self.pages[self._calls - 1]},
            "id": f"call_{self._calls}"}])


def read_run(tmp_path: Path, policy: Path, monkeypatch: pytest.MonkeyPatch,
             pages: tuple[int, ...]) -> tuple[dict[str, Evidence], list[list[dict[str, Any]]]]:
    """A run reading `pages`; returns its final evidence and what the planner was shown."""
    seen: list[list[dict[str, Any]]] = []
    probe = replace(SUPPORT, tools=probe_tools,
                    planner=partial(RereadingPlanner, pages=pages, seen=seen),
                    completion=lambda ctx, evidence: (True, "reads only"))
    workflows.get_workflow("support")
    monkeypatch.setitem(workflows._WORKFLOWS, "support", probe)
    home = tmp_path / "home"
    runner = Runner(Home(home), policy_override=policy)
    runner.ensure_domain_db(probe, reset=True)
    try:
        result = runner.start("support", TICKET, requester="agent@acme.example")
    finally:
        runner.close()
    assert result.status == "resolved", result.reason
    with open_checkpointer(home / "checkpoints.db") as saver:
        last = saver.get_tuple(thread_config(result.run_id))  # type: ignore[arg-type]
    assert last is not None
    return last.checkpoint["channel_values"]["evidence"], seen


def test_identical_calls_are_both_kept_each_with_its_step(
        tmp_path: Path, roomy_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    evidence, seen = read_run(tmp_path, roomy_policy, monkeypatch, (7, 7, 8))
    assert [(e["tool"], e["args"], e["step"]) for e in evidence.values()] == [
        ("read_page", {"page": 7}, 1), ("read_page", {"page": 7}, 2),
        ("read_page", {"page": 8}, 3)]
    # The planner saw both reads of page 7, each with its step, before reading page 8.
    assert [(e["args"]["page"], e["step"]) for e in seen[2]] == [(7, 1), (7, 2)]
    # And policy counts both: history.count is the number of calls, not of distinct ones.
    history = history_facts(ordered(evidence), ["read_page"])
    assert history["count"]["read_page"] == 3


def test_over_the_bound_old_calls_become_summaries_the_planner_sees(
        tmp_path: Path, roomy_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    pages = tuple(range(1, 41))
    evidence, seen = read_run(tmp_path, roomy_policy, monkeypatch, pages)
    assert size_of(evidence) <= EVIDENCE_BYTES
    assert calls_in(evidence) == 40  # none dropped
    folded = [e for e in evidence.values() if e.get("folded")]
    whole = [e for e in evidence.values() if not e.get("folded")]
    assert folded and whole[-1]["args"] == {"page": 40} and whole[-1]["step"] == 40
    assert all(e["tool"] == "read_page" and e["folded"]["failed"] == 0 for e in folded)
    # The planner's last prompt held the summaries, within the bound, oldest first.
    last_prompt = seen[-1]
    shown = [e for e in last_prompt if e.get("folded")]
    assert shown and shown[0]["folded"]["first_step"] == 1
    assert [e["step"] for e in last_prompt] == sorted(e["step"] for e in last_prompt)
    assert len(json.dumps(last_prompt).encode()) < EVIDENCE_BYTES + 2048


def entry(step: int, tool: str = "get_order", **more: Any) -> Evidence:
    return Evidence(tool=tool, args={"order_id": f"ORD-{10000 + step}"},
                    result={"notes": "x" * 400}, error=None, step=step, **more)


def test_folding_keeps_counts_steps_and_refusals() -> None:
    evidence: dict[str, Evidence] = {}
    for step in range(1, 31):
        tool = "lookup_customer" if step % 3 == 0 else "get_order"
        new = entry(step, tool)
        if step == 2:
            new = Evidence(**{**new, "error": "refused by policy rule r1: no",  # type: ignore[typeddict-item]
                              "refusal": {"by": "policy", "rule_id": "r1", "reason": "no"}})
        evidence = merge_evidence(evidence, {f"{step}:{tool}": new})
        assert size_of(evidence) <= EVIDENCE_BYTES
    history = history_facts(ordered(evidence), ["get_order", "lookup_customer"])
    assert history["count"] == {"get_order": 20, "lookup_customer": 10}
    assert history["ok"] == {"get_order": 19, "lookup_customer": 10}
    assert len(history["calls"]) == 30
    # A folded call has no args or result to read (a rule reading them cannot be decided and
    # blocks); the calls still whole are the newest, in order.
    folded_calls = [c for c in history["calls"] if c.get("folded")]
    assert all(c == {"tool": c["tool"], "ok": c["ok"], "folded": True} for c in folded_calls)
    assert [c["ok"] for c in folded_calls].count(False) == 1  # the refusal at step 2
    whole = [e for e in evidence.values() if "folded" not in e]
    assert [e["step"] for e in whole] == list(range(31 - len(whole), 31))
    assert history["calls"][len(folded_calls):] == [
        {"tool": e["tool"], "args": e["args"], "ok": True, "result": e["result"], "error": ""}
        for e in whole]
    summaries = {e["tool"]: e for e in evidence.values() if e.get("folded")}
    assert summaries["get_order"]["folded"]["summary"] == (
        "18 calls of get_order, steps 1 to 26, 1 failed")
    assert summaries["get_order"]["refusal"] == {"by": "policy", "rule_id": "r1",
                                                 "reason": "no"}
    assert summaries["lookup_customer"]["folded"]["calls"] == 9


def test_one_folded_call_reads_as_a_line_with_its_step_and_digest() -> None:
    evidence = {f"{s}:get_order": entry(s) for s in range(1, 3)}
    bound = size_of({"2:get_order": evidence["2:get_order"]}) + 400
    folded = fold_to_bound(evidence, bound)
    first = folded["1:get_order"]
    assert first["step"] == 1 and first["args"] == {} and first["result"] is None
    assert first["folded"]["summary"] == "get_order(order_id=ORD-10001) ok"
    assert first["folded"]["calls"] == 1 and len(first["folded"]["digest"]) == 16
    assert folded["2:get_order"] == evidence["2:get_order"]  # the newest stays whole

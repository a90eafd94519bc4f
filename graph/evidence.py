"""The run's evidence: every call it made, each under its own step, within a byte bound.

Evidence is keyed by step, so a call made twice with the same arguments is two entries, each
with its step. State is checkpointed whole, so the evidence is bounded in bytes
(EVIDENCE_BYTES of JSON): past the bound the oldest calls are folded into summaries (tool,
steps, how many failed, a short text and a digest of what was folded), never dropped. The
newest call stays whole unless it alone is over the bound. Whatever reads a folded call sees
that it was folded: `history.calls` has no args or result for it (a rule that reads them
cannot be decided, so it blocks), and the planner is shown the summary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

EVIDENCE_BYTES = 6 * 1024
"""The bound on a run's evidence in state, as compact JSON; the oldest calls are folded
into summaries to stay within it."""
SUMMARY_CHARS = 120
"""How long the text of one folded call may be."""


class Refusal(TypedDict):
    """Why a call was refused: by a policy rule the planner may act on (on_block = "replan"),
    or by the tool itself (a business refusal: ToolError)."""

    by: Literal["policy", "tool"]
    rule_id: str
    reason: str


class Folded(TypedDict):
    """What is left of calls folded out of the evidence to keep it within its bound."""

    calls: int
    """How many calls this entry stands for (one, or all the folded calls of its tool)."""
    failed: int
    """How many of them failed or were refused."""
    first_step: int
    summary: str
    """The call in a line (tool, arguments, outcome), or a count for several."""
    digest: str
    """sha256 (16 hex) over the folded entries, oldest first: what was folded can be matched
    against the trace store's record of the calls."""


class Evidence(TypedDict):
    """One call of the run (or, when `folded` is set, a summary of folded calls)."""

    tool: str
    args: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    step: int
    """The step of the call (of a folded entry: its latest call)."""
    refusal: NotRequired[Refusal]
    """Set when the call was refused rather than failed: a typed observation."""
    folded: NotRequired[Folded]
    """Set when the entry is a summary: its args and result are gone."""


def evidence_key(step: int, tool: str, *, refused: bool = False) -> str:
    """The key of a call's entry: its step first, so no two calls share one."""
    return f"{step}:{'refused:' if refused else ''}{tool}"


def size_of(evidence: Mapping[str, Any]) -> int:
    """Bytes of `evidence` as compact JSON: what the bound counts."""
    return len(json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str,
                          ensure_ascii=False).encode())


def merge_evidence(left: dict[str, Evidence], right: dict[str, Evidence]) -> dict[str, Evidence]:
    """The evidence channel's reducer: new entries go in after the old (a key written again,
    as on a resume, is replaced), then the oldest are folded until within EVIDENCE_BYTES."""
    merged = {k: v for k, v in left.items() if k not in right}
    merged.update(right)
    return fold_to_bound(merged, EVIDENCE_BYTES)


def fold_to_bound(evidence: dict[str, Evidence], bound: int) -> dict[str, Evidence]:
    """`evidence` folded, oldest first, until its JSON is at most `bound` bytes: whole calls
    into one-line summaries, then each tool's summaries into one, then the newest call."""
    entries = dict(sorted(evidence.items(), key=lambda kv: kv[1].get("step", 0)))
    if size_of(entries) <= bound:
        return entries
    whole = [k for k, e in entries.items() if "folded" not in e]
    for key in whole[:-1]:  # the newest call stays whole while anything else can give
        entries[key] = _fold_one(entries[key])
        if size_of(entries) <= bound:
            return entries
    entries = _fold_by_tool(entries)
    if size_of(entries) > bound and whole:
        entries[whole[-1]] = _fold_one(entries[whole[-1]])
        entries = _fold_by_tool(entries)
    return entries


def _fold_one(entry: Evidence) -> Evidence:
    if "folded" in entry:
        return entry
    ok = entry.get("error") is None
    args = ", ".join(f"{k}={_short(v)}" for k, v in sorted(entry["args"].items()))
    outcome = "ok" if ok else f"failed: {entry.get('error')}"
    summary = f"{entry['tool']}({args}) {outcome}"
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS - 1] + "…"
    digest = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode())
    folded = Evidence(tool=entry["tool"], args={}, result=None,
                      error=None if ok else _short(entry.get("error") or "failed"),
                      step=entry["step"],
                      folded=Folded(calls=1, failed=0 if ok else 1, first_step=entry["step"],
                                    summary=summary, digest=digest.hexdigest()[:16]))
    if "refusal" in entry:  # a refusal stays a refusal: the run's outcome counts it
        folded["refusal"] = entry["refusal"]
    return folded


def _fold_by_tool(entries: dict[str, Evidence]) -> dict[str, Evidence]:
    """Every tool's folded entries merged into one, placed where its newest was."""
    by_tool: dict[str, list[str]] = {}
    for key, entry in entries.items():
        if "folded" in entry:
            by_tool.setdefault(entry["tool"], []).append(key)
    merged = dict(entries)
    for tool, keys in by_tool.items():
        if len(keys) < 2:
            continue
        parts = [entries[k] for k in keys]
        folds = [p["folded"] for p in parts]
        calls, failed = sum(f["calls"] for f in folds), sum(f["failed"] for f in folds)
        first, last = folds[0]["first_step"], parts[-1]["step"]
        digest = hashlib.sha256("".join(f["digest"] for f in folds).encode()).hexdigest()[:16]
        for k in keys:
            del merged[k]
        summary = Evidence(
            tool=tool, args={}, result=None,
            error=None if not failed else f"{failed} of {calls} folded calls failed",
            step=last, folded=Folded(calls=calls, failed=failed, first_step=first,
                                     summary=f"{calls} calls of {tool}, steps {first} to "
                                             f"{last}, {failed} failed", digest=digest))
        refusals = [p["refusal"] for p in parts if "refusal" in p]
        if refusals:
            summary["refusal"] = refusals[-1]
        merged[f"{first}-{last}:{tool}"] = summary
    return dict(sorted(merged.items(), key=lambda kv: kv[1].get("step", 0)))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def evidence_for_model(evidence: Mapping[str, Evidence]) -> list[dict[str, Any]]:
    """The evidence as the planner and the checker read it, oldest first: each call with its
    step, and each folded entry with its summary (so a model knows what it no longer sees)."""
    shown = []
    for e in sorted(evidence.values(), key=lambda e: e.get("step", 0)):
        item: dict[str, Any] = {"tool": e["tool"], "args": e["args"], "result": e["result"],
                                "error": e["error"], "step": e["step"]}
        if e.get("refusal"):
            item["refused"] = e["refusal"]
        if e.get("folded"):
            item["folded"] = e["folded"]
        shown.append(item)
    return shown

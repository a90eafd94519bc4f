"""The run's history as policy conditions read it: `history.calls`, `history.ok`,
`history.count` and `history.last`.

Built from the run's evidence (every tool call so far, in order, with its result or error):

- `history.calls`: the calls, each `{tool, args, ok, result, error}`;
- `history.ok.TOOL`: how many calls of TOOL succeeded (0 for a tool never called);
- `history.count.TOOL`: how many calls of TOOL were made, failed ones included;
- `history.last.TOOL`: the result of TOOL's latest successful call (reading it when TOOL
  never succeeded cannot be decided, so the rule blocks).

"The customer was looked up before any write" is `history.ok.lookup_customer > 0`.

Calls folded out of a long run's evidence (graph.evidence) still count in `ok` and `count`;
in `calls` each is only `{tool, ok, folded}`, so a rule reading its args or result cannot be
decided and blocks, and `last` has no result for a tool whose latest success was folded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def history_facts(evidence: Iterable[Mapping[str, Any]], tools: Iterable[str]) -> dict[str, Any]:
    """The `history` namespace for `evidence` (oldest first); `tools` are the tool names
    `ok` and `count` answer 0 for."""
    calls: list[dict[str, Any]] = []
    ok: Counter[str] = Counter()
    count: Counter[str] = Counter()
    last: dict[str, Any] = {}
    for e in evidence:
        tool = str(e.get("tool"))
        folded = e.get("folded")
        if folded:
            n, failed = int(folded["calls"]), int(folded["failed"])
            # Which of an aggregate's calls failed is not kept, only how many: each call keeps
            # its tool and whether it succeeded; its args and result are gone.
            calls.extend({"tool": tool, "ok": i >= failed, "folded": True} for i in range(n))
            ok[tool] += n - failed
            count[tool] += n
            if n > failed:
                last.pop(tool, None)  # its latest success is folded: not known any more
            continue
        call = {"tool": tool, "args": dict(e.get("args") or {}), "ok": e.get("error") is None,
                "result": e.get("result") or {}, "error": e.get("error") or ""}
        calls.append(call)
        count[tool] += 1
        if call["ok"]:
            ok[tool] += 1
            last[tool] = call["result"]
    names = dict.fromkeys(tools, 0)
    return {"calls": calls, "ok": {**names, **ok}, "count": {**names, **count}, "last": last}


def ordered(evidence: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A run's evidence entries oldest first (by step where entries carry one)."""
    entries = list(evidence.values())
    return sorted(entries, key=lambda e: e.get("step") or 0) if all(
        isinstance(e.get("step"), int) for e in entries) else entries

"""A support workflow whose scripted planner makes N read calls and then stops.

Used by the growth, resume and throughput benches: it runs through the real Runner with every
control on, under a policy override whose budgets are large enough for N steps.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import PrivateAttr

from graph.context import Workflow
from graph.models import EVIDENCE_MARK, TICKET_MARK, ScriptedChatModel, extract_block
from graph.workflows import get_workflow, register_workflow

BIG_BUDGETS = {"model_calls": 100_000, "tokens": 1_000_000_000, "tool_calls": 100_000,
               "wall_seconds": 86_400, "money_usd": 1_000_000}


class ReadPlanner(ScriptedChatModel):
    """Looks the customer up, then lists their orders (limit 1..10 in turn) until N calls."""

    model_name: str = "scripted-read-planner"
    reads: int = 10
    _made: int = PrivateAttr(default=0)

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        if self._made >= self.reads:
            return AIMessage(content=f"DONE: {self._made} reads")
        self._made += 1
        ticket = extract_block(messages, TICKET_MARK) or {}
        evidence = extract_block(messages, EVIDENCE_MARK) or []
        customer = next((e["result"] for e in evidence
                         if e["tool"] == "lookup_customer" and e["result"]), None)
        if customer is None:
            name, args = "lookup_customer", {"email": ticket.get("customer_email")}
        else:
            name, args = "list_orders", {"customer_id": customer["customer_id"],
                                         "limit": 1 + self._made % 10}
        return AIMessage(content="", tool_calls=[{"name": name, "args": args,
                                                  "id": f"call_{self._made}_{name}"}])


def reads_workflow(reads: int) -> Workflow:
    """The support workflow with a planner that makes `reads` read calls (registered)."""
    base = get_workflow("support")
    workflow = dataclasses.replace(base, name=f"bench-reads-{reads}",
                                   planner=lambda: ReadPlanner(reads=reads))
    return register_workflow(workflow)


def big_budget_policy(dest: Path) -> Path:
    """A copy of the support policy with budgets large enough for long runs."""
    text = get_workflow("support").policy_path.read_text(encoding="utf-8")
    for key, value in BIG_BUDGETS.items():
        text, count = re.subn(rf"(?m)^{key}\s*=\s*[0-9.]+", f"{key} = {value}", text)
        if count != 1:
            raise ValueError(f"cannot set budget {key} in the support policy")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest

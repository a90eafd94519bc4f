"""The three ways to run a support ticket that section 1 compares, each behind `run(ticket)`.

(a) SignoffVariant: the real Runner with every control on (gate, verifier, approval, ledger,
    recorder, audit), durability "sync", the SQLite checkpointer.
(b) BareGraphVariant: the same graph shape with the controls removed: plan, gate, verify,
    execute, postcheck and finish on bare LangGraph + SqliteSaver, the control nodes passing
    everything through; the same scripted planner and the same tools.
(c) AgentVariant: LangChain's create_agent with HumanInTheLoopMiddleware,
    ToolCallLimitMiddleware and ModelCallLimitMiddleware on the same tools (wrapped as
    LangChain tools), the same scripted planner behind an adapter, the same SqliteSaver.

Every variant uses one support database per home, one SqliteSaver opened through
checkpoints.saver.open_checkpointer, and durability "sync". (b) and (c) compile their graph
once per process, as a user of either would; (a) does whatever the Runner does.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import ValidationError

from bench.common import REQUESTER, approver_for
from checkpoints.saver import DURABILITY, open_checkpointer, thread_config
from graph.context import SampleTicket
from graph.evidence import Evidence, evidence_key, merge_evidence
from graph.models import EVIDENCE_MARK, TICKET_MARK, ScriptedChatModel, extract_block
from graph.observe import recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from graph.workflows.support import SYSTEM_PROMPT
from graph.workflows.support_planner import SupportPlanner
from tools.base import ToolContext, ToolError, ToolRegistry
from tools.ledger import canonical_json
from tools.support import build_support_db, open_support_db, support_registry

APPROVAL_CENTS = 5000
"""Refunds above this wait for a human in every variant that has approvals (policy: $50)."""
LIMIT = 12
"""Tool-call and model-call limits, the sample policy's budgets."""


@dataclass
class TicketRun:
    """What one variant did with one ticket."""

    thread_id: str
    outcome: str
    tool_calls: int
    approvals: int


def _ticket_dict(ticket: SampleTicket) -> dict[str, Any]:
    return {"ticket_id": ticket.ticket_id, "customer_id": ticket.customer_id,
            "customer_email": ticket.customer_email, "subject": ticket.subject,
            "body": ticket.body}


def _tool_ctx(conn: sqlite3.Connection, ticket: SampleTicket, run_id: str) -> ToolContext:
    return ToolContext(conn=conn, tenant_id=ticket.tenant_id, run_id=run_id,
                       customer_id=ticket.customer_id, ticket_id=ticket.ticket_id)


def run_tool(registry: ToolRegistry, ctx: ToolContext, tool: str,
             args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """Validate and run one tool the plain way: (normalised args, result, error).

    A mutation commits in its own transaction; there is no ledger, gate or verifier.
    """
    spec = registry.get(tool)
    if spec is None:
        return args, None, f"unknown tool {tool!r}"
    try:
        parsed = spec.parse_args(args)
    except ValidationError as exc:
        return args, None, f"invalid arguments: {exc.error_count()} errors"
    normalised = parsed.model_dump(mode="json")
    try:
        if spec.mutates:
            with ctx.conn:
                result = spec.run(ctx, parsed).model_dump(mode="json")
        else:
            result = spec.run(ctx, parsed).model_dump(mode="json")
    except ToolError as exc:
        return normalised, None, str(exc)
    return normalised, result, None


# (a) signoff ----------------------------------------------------------------------------------


class SignoffVariant:
    name = "a: signoff"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.workflow = get_workflow("support")
        self.runner = Runner(Home(home), recorder_factory=recorder_factory())

    @property
    def checkpoints_db(self) -> Path:
        return self.runner.home.checkpoints_db

    def reset(self) -> None:
        self.runner.ensure_domain_db(self.workflow, reset=True)

    def run(self, ticket: SampleTicket) -> TicketRun:
        result = self.runner.start("support", ticket, requester=REQUESTER)
        approvals = 0
        while result.status == "waiting_approval":
            approvals += 1
            result = self.runner.decide(result.run_id, {
                "action": "approve", "by": approver_for(ticket.tenant_id),
                "reason": "benchmark approval"})
        calls = result.usage["tool_calls"] if result.usage else 0
        return TicketRun(result.run_id, result.status, int(calls), approvals)

    def close(self) -> None:
        self.runner.close()


# (b) the same graph shape, controls removed ---------------------------------------------------


class BareState(TypedDict):
    ticket: dict[str, Any]
    evidence: Annotated[dict[str, Evidence], merge_evidence]
    proposal: dict[str, Any] | None
    step: int
    tool_calls: int


class BareGraphVariant:
    """signoff's graph shape (plan, gate, verify, execute, postcheck, finish) on bare LangGraph
    with the scripted planner and the same tools; the control nodes pass everything through."""

    name = "b: bare LangGraph"

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.registry = support_registry()
        self.planner = SupportPlanner()
        self._stack = ExitStack()
        self.saver = self._stack.enter_context(open_checkpointer(self.checkpoints_db))
        self.graph = self._build().compile(checkpointer=self.saver)
        self.conn: sqlite3.Connection | None = None
        self._ticket: SampleTicket | None = None
        self._thread = ""

    @property
    def checkpoints_db(self) -> Path:
        return self.home / "checkpoints.db"

    def reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        build_support_db(self.home / "support.db", overwrite=True)
        self.conn = open_support_db(self.home / "support.db")

    def _build(self) -> StateGraph:
        # The same model work as signoff's plan node: the tool contracts bound once, the
        # ticket and the evidence sent as JSON, the first tool call taken.
        model = self.planner.bind_tools([spec.openai_schema() for spec in self.registry])

        def plan(state: BareState) -> dict[str, Any]:
            evidence = [{"tool": e["tool"], "args": e["args"], "result": e["result"],
                         "error": e["error"]} for e in state["evidence"].values()]
            reply = model.invoke([
                SystemMessage(SYSTEM_PROMPT),
                HumanMessage(TICKET_MARK + json.dumps(state["ticket"], sort_keys=True)),
                HumanMessage(EVIDENCE_MARK + json.dumps(evidence, sort_keys=True))])
            assert isinstance(reply, AIMessage)
            call = reply.tool_calls[0] if reply.tool_calls else None
            proposal = {"tool": call["name"], "args": dict(call["args"])} if call else None
            return {"proposal": proposal, "step": state["step"] + 1}

        def execute(state: BareState) -> dict[str, Any]:
            proposal = state["proposal"]
            assert proposal is not None and self.conn is not None and self._ticket is not None
            ctx = _tool_ctx(self.conn, self._ticket, self._thread)
            args, result, error = run_tool(self.registry, ctx, proposal["tool"],
                                           proposal["args"])
            entry = Evidence(tool=proposal["tool"], args=args, result=result, error=error,
                             step=state["step"])
            return {"evidence": {evidence_key(state["step"], proposal["tool"]): entry},
                    "tool_calls": state["tool_calls"] + 1}

        # The control nodes keep their place in the graph and do nothing: the gate routes by
        # the tool's kind alone, verify and postcheck pass, there is no approval, ledger,
        # kill switch, trace or lease. What is left is the cost of the shape itself.
        def gate(state: BareState) -> dict[str, Any]:
            return {}

        def verify(state: BareState) -> dict[str, Any]:
            return {}

        def postcheck(state: BareState) -> dict[str, Any]:
            return {}

        def finish(state: BareState) -> dict[str, Any]:
            return {}

        def mutates(state: BareState) -> bool:
            proposal = state["proposal"] or {}
            spec = self.registry.get(proposal.get("tool", ""))
            return spec is not None and spec.mutates

        def after_plan(state: BareState) -> str:
            return "gate" if state["proposal"] and state["tool_calls"] < LIMIT else "finish"

        def after_gate(state: BareState) -> str:
            return "verify" if mutates(state) else "execute"

        def after_execute(state: BareState) -> str:
            return "postcheck" if mutates(state) else "plan"

        g = StateGraph(BareState)
        for name, fn in (("plan", plan), ("gate", gate), ("verify", verify),
                         ("execute", execute), ("postcheck", postcheck), ("finish", finish)):
            g.add_node(name, fn)
        g.add_edge(START, "plan")
        g.add_conditional_edges("plan", after_plan, ["gate", "finish"])
        g.add_conditional_edges("gate", after_gate, ["verify", "execute"])
        g.add_edge("verify", "execute")
        g.add_conditional_edges("execute", after_execute, ["postcheck", "plan"])
        g.add_edge("postcheck", "plan")
        g.add_edge("finish", END)
        return g

    def run(self, ticket: SampleTicket) -> TicketRun:
        self._ticket, self._thread = ticket, f"bare-{uuid.uuid4().hex[:10]}"
        inputs = {"ticket": _ticket_dict(ticket), "evidence": {}, "proposal": None, "step": 0,
                  "tool_calls": 0}
        config = thread_config(self._thread)
        for _ in self.graph.stream(inputs, config, durability=DURABILITY,  # type: ignore[arg-type]
                                   stream_mode="updates"):
            pass
        values = self.graph.get_state(config).values  # type: ignore[arg-type]
        return TicketRun(self._thread, "done", values["tool_calls"], 0)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._stack.close()


# (c) LangChain create_agent with middleware ----------------------------------------------------


class AgentPlannerAdapter(ScriptedChatModel):
    """The scripted support planner behind create_agent's message-history interface.

    It rebuilds the planner's view (the ticket and the evidence as JSON, deduplicated by call
    as signoff's state does) from the agent's transcript, then asks SupportPlanner.
    """

    model_name: str = "scripted-support-planner"

    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        ticket = extract_block(messages, TICKET_MARK) or {}
        results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
        evidence: dict[str, dict[str, Any]] = {}
        for message in messages:
            if not isinstance(message, AIMessage):
                continue
            for call in message.tool_calls:
                answer = results.get(call.get("id") or "")
                if answer is None:
                    continue
                text = answer.content if isinstance(answer.content, str) else ""
                failed = answer.status == "error"
                key = f"{call['name']}:{canonical_json(call['args'])}"
                evidence.pop(key, None)
                evidence[key] = {"tool": call["name"], "args": call["args"],
                                 "result": None if failed else json.loads(text),
                                 "error": text if failed else None}
        view = [SystemMessage(SYSTEM_PROMPT),
                HumanMessage(TICKET_MARK + json.dumps(ticket, sort_keys=True)),
                HumanMessage(EVIDENCE_MARK + json.dumps(list(evidence.values()),
                                                        sort_keys=True))]
        return _PLANNER.respond(view, tools)


_PLANNER = SupportPlanner()


class AgentVariant:
    """create_agent + HumanInTheLoop (refunds over $50), ToolCallLimit, ModelCallLimit."""

    name = "c: create_agent"

    def __init__(self, home: Path) -> None:
        from langchain.agents import create_agent
        from langchain.agents.middleware import (
            HumanInTheLoopMiddleware,
            ModelCallLimitMiddleware,
            ToolCallLimitMiddleware,
        )

        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.registry = support_registry()
        self._stack = ExitStack()
        self.saver = self._stack.enter_context(open_checkpointer(self.checkpoints_db))
        self.conn: sqlite3.Connection | None = None
        self._ticket: SampleTicket | None = None
        self._thread = ""
        self.tool_calls = 0
        hitl = HumanInTheLoopMiddleware(interrupt_on={"create_refund_request": {
            "allowed_decisions": ["approve", "edit", "reject"],
            "when": lambda req: req.tool_call["args"].get("amount_cents", 0) > APPROVAL_CENTS}})
        self.agent = create_agent(
            AgentPlannerAdapter(), tools=[self._wrap(spec.name) for spec in self.registry],
            system_prompt=SYSTEM_PROMPT, checkpointer=self.saver,
            middleware=[hitl, ToolCallLimitMiddleware(thread_limit=LIMIT),
                        ModelCallLimitMiddleware(thread_limit=LIMIT)])

    @property
    def checkpoints_db(self) -> Path:
        return self.home / "checkpoints.db"

    def reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        build_support_db(self.home / "support.db", overwrite=True)
        self.conn = open_support_db(self.home / "support.db")

    def _wrap(self, tool: str) -> Any:
        from langchain_core.tools import StructuredTool, ToolException

        spec = self.registry.get(tool)
        assert spec is not None

        def call(**kwargs: Any) -> str:
            assert self.conn is not None and self._ticket is not None
            self.tool_calls += 1
            ctx = _tool_ctx(self.conn, self._ticket, self._thread)
            _, result, error = run_tool(self.registry, ctx, tool, kwargs)
            if error is not None:
                raise ToolException(error)
            return json.dumps(result, sort_keys=True)

        return StructuredTool.from_function(func=call, name=spec.name,
                                            description=spec.description,
                                            args_schema=spec.input_model,
                                            handle_tool_error=True)

    def run(self, ticket: SampleTicket) -> TicketRun:
        self._ticket, self._thread = ticket, f"agent-{uuid.uuid4().hex[:10]}"
        self.tool_calls, approvals = 0, 0
        config = thread_config(self._thread)
        payload: Any = {"messages": [HumanMessage(
            TICKET_MARK + json.dumps(_ticket_dict(ticket), sort_keys=True))]}
        while True:
            for _ in self.agent.stream(payload, config,  # type: ignore[arg-type]
                                       durability=DURABILITY, stream_mode="updates"):
                pass
            snapshot = self.agent.get_state(config)  # type: ignore[arg-type]
            if not snapshot.interrupts:
                break
            approvals += 1
            requests = snapshot.interrupts[0].value.get("action_requests") or [None]
            payload = Command(resume={"decisions": [{"type": "approve"} for _ in requests]})
        return TicketRun(self._thread, "done", self.tool_calls, approvals)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._stack.close()

"""The graph factory: returns the uncompiled StateGraph; callers compile it at their edge
with their checkpointer (`build_graph().compile(checkpointer=saver)`)."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph import routing
from graph.context import RunContext
from graph.nodes.approve import approve
from graph.nodes.execute import execute
from graph.nodes.fallback import fallback
from graph.nodes.finish import finish
from graph.nodes.gate import gate
from graph.nodes.plan import plan
from graph.nodes.postcheck import postcheck
from graph.nodes.verify import verify
from graph.state import AgentState, InputState, OutputState


def build_graph() -> StateGraph[AgentState, RunContext, InputState, OutputState]:
    """plan -> gate -> (verify -> (approve ->)) execute -> postcheck -> plan, until the planner
    is done (finish) or something stops the run (fallback)."""
    g = StateGraph(AgentState, context_schema=RunContext, input_schema=InputState,
                   output_schema=OutputState)
    g.add_node("plan", plan)
    g.add_node("gate", gate)
    g.add_node("verify", verify)
    g.add_node("approve", approve)
    g.add_node("execute", execute)
    g.add_node("postcheck", postcheck)
    g.add_node("fallback", fallback)
    g.add_node("finish", finish)

    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", routing.after_plan)
    g.add_conditional_edges("gate", routing.after_gate)
    g.add_conditional_edges("verify", routing.after_verify)
    g.add_conditional_edges("approve", routing.after_approve)
    g.add_conditional_edges("execute", routing.after_execute)
    g.add_conditional_edges("postcheck", routing.after_postcheck)
    g.add_edge("fallback", END)
    g.add_edge("finish", END)
    return g

"""The support graph for LangGraph Studio (`langgraph dev` reads langgraph.json, which names
`support_graph`). Studio shows the topology and steps through state; a drive needs the
RunContext the runner builds (policy, tools, models, database), which Studio cannot pass, so
runs are started with the CLI or the service (docs/architecture.md, "LangGraph Studio")."""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graph.factory import build_graph
from graph.workflows import get_workflow


def support_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The support workflow's graph, compiled without a checkpointer (the server adds its own)."""
    return build_graph(get_workflow("support").extensions).compile()

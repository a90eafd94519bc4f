"""Extensions: extra nodes and edges a workflow adds to the core graph without editing it.

An `Extension` names its nodes and wires them in, either at a named insertion point or with
plain edges and routers:

- `before_plan`: a node run once, at START, before the first plan. It may end the run (return
  `end_run(...)`, routed to finish), stop it (return `stop_run(...)`, routed to fallback) or
  let it go on to plan.
- `after_execute`: a node run after every tool call, before the core decides between
  postcheck, plan and fallback (so it sees `last_call`). It may stop the run.
- `routes`: a router per source node (a new node, or a core node whose router it replaces);
  the router's `Literal[...]` return annotation names where it can go, as in graph.routing.
- `edges`: plain `(source, target)` edges between new nodes (or from a new node to a core one).

Nodes decide; only execute mutates. An extension node must not change the domain: it reads
`runtime.context` and returns a state update.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from graph.state import AgentState, Outcome

NodeFn = Callable[..., dict[str, Any]]
Router = Callable[[AgentState], str]

INSERTION_POINTS = ("before_plan", "after_execute")


class ExtensionError(ValueError):
    """An extension cannot be wired into the graph (a name clash, an unknown node)."""


@dataclass(frozen=True)
class Extension:
    """Nodes and edges added to the core graph; see the module docstring for each field."""

    name: str
    """Shown in errors; extensions are applied in the order given."""
    nodes: Mapping[str, NodeFn] = field(default_factory=dict)
    """New nodes by name; a name may not clash with a core node or another extension's."""
    before_plan: str | None = None
    """A node of `nodes` to run once at START, before the first plan."""
    after_execute: str | None = None
    """A node of `nodes` to run after every execute."""
    routes: Mapping[str, Router] = field(default_factory=dict)
    """Source node -> router (with a Literal return annotation)."""
    edges: Sequence[tuple[str, str]] = ()
    """Plain edges, (source, target)."""


def end_run(note: str) -> dict[str, Any]:
    """A before-plan node's update that ends the run the way the planner does ("DONE")."""
    return {"proposal": None, "plan_note": f"DONE: {note}"}


def stop_run(reason: str, outcome: Outcome = "blocked") -> dict[str, Any]:
    """An update that stops the run; it is routed to fallback with this reason."""
    return {"outcome": outcome, "reason": reason}


def after_before_plan(state: AgentState) -> Literal["next", "finish", "fallback"]:
    """Where a before-plan node leads: its successor ("next"), finish, or fallback."""
    if state.get("outcome"):
        return "fallback"
    if state.get("plan_note") and not state.get("proposal"):
        return "finish"
    return "next"


def after_chained_hook(state: AgentState) -> Literal["next", "fallback"]:
    """Where an after-execute node leads when another after-execute node follows it."""
    return "fallback" if state.get("outcome") else "next"
